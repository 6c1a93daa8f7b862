// A small per-command flag parser for the `harmamba` tool.
//
// Accepts `--name value` and `--name=value`; boolean flags take no value
// (`--json`) or an explicit one (`--json=true|false|1|0`). `-h`/`--help`
// request the usage text. Positional arguments, unknown flags, repeated flags,
// missing values, malformed numbers and missing required flags are usage
// errors whose message names the flag.
//
// A FlagParser is used by one thread; the targets it writes are owned by the
// caller and must outlive Parse().
#ifndef HARMAMBA_TOOLS_FLAG_PARSER_H_
#define HARMAMBA_TOOLS_FLAG_PARSER_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace harmamba::cli {

// Process exit codes of every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsageError = 2;

class FlagParser {
 public:
  // `command` is the sub-command ("predict"); `synopsis` the part of the usage
  // line after "harmamba <command> " (e.g. "--model FILE [options]");
  // `description` one or more sentences printed under it.
  FlagParser(std::string command, std::string synopsis,
             std::string description);

  // Registers a flag written as --`name`. `value_name` is the placeholder in
  // the usage text (FILE, N). The target keeps its value when the flag is
  // absent (that value is the default shown in the usage text unless
  // `required`).
  void AddString(const std::string& name, const std::string& value_name,
                 const std::string& help, std::string* target,
                 bool required = false);
  // Like AddString, restricted to one of `choices`.
  void AddChoice(const std::string& name,
                 const std::vector<std::string>& choices,
                 const std::string& help, std::string* target);
  // A decimal integer in [min_value, max_value].
  void AddInt(const std::string& name, const std::string& value_name,
              const std::string& help, int64_t* target, int64_t min_value,
              int64_t max_value);
  // A finite decimal number in [min_value, max_value].
  void AddDouble(const std::string& name, const std::string& value_name,
                 const std::string& help, double* target, double min_value,
                 double max_value);
  void AddBool(const std::string& name, const std::string& help, bool* target);

  // Parses `args` (the arguments after the command name). InvalidArgument on
  // a usage error. After -h/--help, stops and returns OK with
  // help_requested() true (required flags are then not checked).
  absl::Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_requested_; }

  // The full usage text, ending with a newline.
  std::string Usage() const;

  // Parse() plus the standard reporting: on -h/--help prints Usage() to `out`
  // and returns kExitOk; on a usage error prints
  // "harmamba <command>: error: <message>", a blank line and Usage() to `err`
  // and returns kExitUsageError; returns nullopt when the command should run.
  std::optional<int> ParseOrReport(const std::vector<std::string>& args,
                                   std::ostream& out, std::ostream& err);

  const std::string& command() const { return command_; }

 private:
  enum class Kind { kString, kChoice, kInt, kDouble, kBool };
  struct Flag {
    std::string name;
    std::string value_name;
    std::string help;
    Kind kind;
    bool required = false;
    std::vector<std::string> choices;
    int64_t min_value = 0;
    int64_t max_value = 0;
    std::string* string_target = nullptr;
    int64_t* int_target = nullptr;
    double min_double = 0.0;
    double max_double = 0.0;
    double* double_target = nullptr;
    bool* bool_target = nullptr;
    std::string default_text;  // shown in the usage text; empty = none
    bool seen = false;
  };

  Flag* Find(const std::string& name);
  absl::Status SetValue(Flag& flag, const std::string& value);

  std::string command_;
  std::string synopsis_;
  std::string description_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

// Prints "harmamba <command>: error: <message>" to `err` and returns
// kExitRuntimeError. For failures after the arguments were accepted.
int ReportRuntimeError(const std::string& command, const absl::Status& status,
                       std::ostream& err);

}  // namespace harmamba::cli

#endif  // HARMAMBA_TOOLS_FLAG_PARSER_H_
