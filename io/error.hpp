#pragma once
// Two levels of errors (see STYLE.md):
//  - InputError: bad user input (a file, a tensor, a flag). The message names the
//    thing, what was expected and what was found. Thrown; only main() turns it
//    into an exit code.
//  - PTQ_ASSERT: an internal invariant. A failure is a bug in ptq, so it aborts
//    with the expression and file:line instead of unwinding.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ptq {

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "<where>: expected <expected>, found <found>" — the one shape every input
// error message takes, so users can grep for it.
inline InputError input_error(const std::string& where, const std::string& expected,
                              const std::string& found) {
  return InputError(where + ": expected " + expected + ", found " + found);
}

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "ptq internal error: %s failed at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace ptq

#define PTQ_ASSERT(expr) ((expr) ? static_cast<void>(0) : ::ptq::assert_fail(#expr, __FILE__, __LINE__))
