#pragma once
// Internal to pipeline/recipe/: every enum a recipe names is a table of
// {text, value}, read and written through these helpers.
#include <cstddef>
#include <string>
#include <utility>

#include "io/error.hpp"

namespace ptq::recipe_detail {

template <class E, std::size_t N>
using NameTable = std::pair<const char*, E>[N];

template <class E, std::size_t N>
std::string name_list(const NameTable<E, N>& names, const char* separator) {
  std::string list;
  for (const auto& [text, value] : names)
    list += (list.empty() ? "" : separator) + std::string(text);
  return list;
}

// The value named `text`; InputError naming `where` and what was `expected` otherwise.
template <class E, std::size_t N>
E named(const std::string& text, const std::string& where, const std::string& expected,
        const NameTable<E, N>& names) {
  for (const auto& [name, value] : names)
    if (text == name) return value;
  throw input_error(where, expected, "\"" + text + "\"");
}

template <class E, std::size_t N>
const char* choice_name(E value, const NameTable<E, N>& names) {
  for (const auto& [text, v] : names)
    if (v == value) return text;
  return "?";
}

}  // namespace ptq::recipe_detail
