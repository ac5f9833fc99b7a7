#pragma once
// Pre-tokenizer regexes of GPT-2, Llama 3 and Qwen2, implemented as hand-written
// matchers over code points (internal to io/). Each reproduces the leftmost-first
// alternation and backtracking of the original regex.
#include <optional>
#include <string_view>
#include <vector>

#include "io/tokenizer.hpp"

namespace ptq {

// The regex text as it appears in tokenizer.json / the reference implementations.
std::string_view split_regex_pattern(SplitRegex regex);
std::string_view split_regex_name(SplitRegex regex);
// Which known regex a Split pre-tokenizer pattern is (exact text match).
std::optional<SplitRegex> recognise_split_pattern(std::string_view pattern);

// The pieces of `text` the regex matches, in order; together they cover the text.
// `where` names the text for the InputError thrown on invalid UTF-8.
std::vector<std::string_view> split_words(std::string_view text, SplitRegex regex,
                                          std::string_view where);

}  // namespace ptq
