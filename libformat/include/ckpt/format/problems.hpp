// The one way parsers and validators report problems. A parser reports each
// problem to a sink and stops when the sink says so: opening uses FailFast
// (the first error ends it), validating uses CollectAll (every problem is
// kept, the parse goes on past each). One parse, two policies.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/format/error.hpp"
#include "ckpt/format/validation.hpp"

namespace ckpt {

class ProblemSink {
 public:
  virtual ~ProblemSink() = default;
  // Records `problem`; returns false when the parser should stop.
  virtual bool report(Severity severity, Error problem) = 0;
  bool error(Error problem) { return report(Severity::kError, std::move(problem)); }
  bool warning(Error problem) { return report(Severity::kWarning, std::move(problem)); }
};

// Stops at the first error and keeps it; keeps warnings before it.
class FailFast final : public ProblemSink {
 public:
  bool report(Severity severity, Error problem) override;

  bool failed() const { return first_error_.has_value(); }
  // The first error, or ok.
  Status status() const;
  // `value` when no error was reported, the first error otherwise.
  template <class T>
  Result<T> result(T value) const {
    if (first_error_) return *first_error_;
    return std::move(value);
  }
  const std::vector<Error>& warnings() const { return warnings_; }

 private:
  std::optional<Error> first_error_;
  std::vector<Error> warnings_;
};

// Keeps every problem as an issue; never stops the parse.
class CollectAll final : public ProblemSink {
 public:
  bool report(Severity severity, Error problem) override;

  bool has_errors() const;
  std::vector<Issue>& issues() { return issues_; }

 private:
  std::vector<Issue> issues_;
};

// Passes problems on and remembers whether one was an error and whether
// the sink said stop: for a parser that must know either after a call.
class TrackingSink final : public ProblemSink {
 public:
  explicit TrackingSink(ProblemSink& inner) : inner_(inner) {}
  bool report(Severity severity, Error problem) override;
  bool failed() const { return failed_; }
  bool stopped() const { return stopped_; }

 private:
  ProblemSink& inner_;
  bool failed_ = false;
  bool stopped_ = false;
};

// Names `file` (and `variable`, when not empty) in every problem, then
// passes it on: for a parser that knows only its bytes.
class InContext final : public ProblemSink {
 public:
  InContext(ProblemSink& inner, std::string file, std::string variable = {})
      : inner_(inner), file_(std::move(file)), variable_(std::move(variable)) {}
  bool report(Severity severity, Error problem) override;

 private:
  ProblemSink& inner_;
  std::string file_;
  std::string variable_;
};

}  // namespace ckpt
