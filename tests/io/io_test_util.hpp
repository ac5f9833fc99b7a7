#pragma once
// Helpers for I/O tests: write files, expect InputError with given text.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/error.hpp"

namespace ptq::test {

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A raw safetensors file: u64 LE header length, the header text, then `data`.
inline void write_raw_safetensors(const std::filesystem::path& path, const std::string& header,
                                  const std::string& data,
                                  std::uint64_t claimed_length = UINT64_MAX) {
  const std::uint64_t length = claimed_length == UINT64_MAX ? header.size() : claimed_length;
  char prefix[8];
  std::memcpy(prefix, &length, 8);
  write_text(path, std::string(prefix, 8) + header + data);
}

// Runs `fn`, expects InputError, and checks the message holds every needle.
template <typename Fn>
void expect_input_error(Fn&& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    for (const auto& needle : needles) {
      EXPECT_NE(message.find(needle), std::string::npos)
          << "missing \"" << needle << "\" in: " << message;
    }
  }
}

}  // namespace ptq::test
