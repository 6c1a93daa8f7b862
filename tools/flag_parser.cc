#include "tools/flag_parser.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace harmamba::cli {
namespace {

constexpr size_t kUsageWidth = 80;
constexpr size_t kMaxFlagColumn = 30;

// Appends `text` word-wrapped to kUsageWidth, continuation lines indented by
// `indent` spaces; `column` is where the text starts on the current line.
void AppendWrapped(const std::string& text, size_t column, size_t indent,
                   std::string* out) {
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    const bool line_start = column == indent;
    if (!line_start && column + 1 + word.size() > kUsageWidth) {
      absl::StrAppend(out, "\n", std::string(indent, ' '));
      column = indent;
    } else if (!line_start) {
      out->push_back(' ');
      ++column;
    }
    absl::StrAppend(out, word);
    column += word.size();
  }
  out->push_back('\n');
}

}  // namespace

FlagParser::FlagParser(std::string command, std::string synopsis,
                       std::string description)
    : command_(std::move(command)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)) {}

void FlagParser::AddString(const std::string& name,
                           const std::string& value_name,
                           const std::string& help, std::string* target,
                           bool required) {
  Flag flag;
  flag.name = name;
  flag.value_name = value_name;
  flag.help = help;
  flag.kind = Kind::kString;
  flag.required = required;
  flag.string_target = target;
  if (!required && !target->empty()) flag.default_text = *target;
  flags_.push_back(std::move(flag));
}

void FlagParser::AddChoice(const std::string& name,
                           const std::vector<std::string>& choices,
                           const std::string& help, std::string* target) {
  Flag flag;
  flag.name = name;
  flag.value_name = absl::StrJoin(choices, "|");
  flag.help = help;
  flag.kind = Kind::kChoice;
  flag.choices = choices;
  flag.string_target = target;
  flag.default_text = *target;
  flags_.push_back(std::move(flag));
}

void FlagParser::AddInt(const std::string& name, const std::string& value_name,
                        const std::string& help, int64_t* target,
                        int64_t min_value, int64_t max_value) {
  Flag flag;
  flag.name = name;
  flag.value_name = value_name;
  flag.help = help;
  flag.kind = Kind::kInt;
  flag.min_value = min_value;
  flag.max_value = max_value;
  flag.int_target = target;
  flag.default_text = absl::StrCat(*target);
  flags_.push_back(std::move(flag));
}

void FlagParser::AddDouble(const std::string& name,
                           const std::string& value_name,
                           const std::string& help, double* target,
                           double min_value, double max_value) {
  Flag flag;
  flag.name = name;
  flag.value_name = value_name;
  flag.help = help;
  flag.kind = Kind::kDouble;
  flag.min_double = min_value;
  flag.max_double = max_value;
  flag.double_target = target;
  flag.default_text = absl::StrCat(*target);
  flags_.push_back(std::move(flag));
}

void FlagParser::AddBool(const std::string& name, const std::string& help,
                         bool* target) {
  Flag flag;
  flag.name = name;
  flag.help = help;
  flag.kind = Kind::kBool;
  flag.bool_target = target;
  flags_.push_back(std::move(flag));
}

FlagParser::Flag* FlagParser::Find(const std::string& name) {
  for (Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

absl::Status FlagParser::SetValue(Flag& flag, const std::string& value) {
  const std::string dashed = absl::StrCat("--", flag.name);
  switch (flag.kind) {
    case Kind::kString:
      *flag.string_target = value;
      return absl::OkStatus();
    case Kind::kChoice:
      if (std::find(flag.choices.begin(), flag.choices.end(), value) ==
          flag.choices.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            dashed, ": expected one of ", absl::StrJoin(flag.choices, ", "),
            "; got '", value, "'"));
      }
      *flag.string_target = value;
      return absl::OkStatus();
    case Kind::kInt: {
      int64_t parsed = 0;
      if (!absl::SimpleAtoi(value, &parsed)) {
        return absl::InvalidArgumentError(
            absl::StrCat(dashed, ": expected an integer, got '", value, "'"));
      }
      if (parsed < flag.min_value || parsed > flag.max_value) {
        return absl::InvalidArgumentError(
            flag.max_value == std::numeric_limits<int64_t>::max()
                ? absl::StrCat(dashed, ": must be >= ", flag.min_value,
                               ", got ", parsed)
                : absl::StrCat(dashed, ": must be between ", flag.min_value,
                               " and ", flag.max_value, ", got ", parsed));
      }
      *flag.int_target = parsed;
      return absl::OkStatus();
    }
    case Kind::kDouble: {
      double parsed = 0.0;
      if (!absl::SimpleAtod(value, &parsed) || !std::isfinite(parsed)) {
        return absl::InvalidArgumentError(
            absl::StrCat(dashed, ": expected a number, got '", value, "'"));
      }
      if (parsed < flag.min_double || parsed > flag.max_double) {
        return absl::InvalidArgumentError(
            absl::StrCat(dashed, ": must be between ", flag.min_double, " and ",
                         flag.max_double, ", got ", value));
      }
      *flag.double_target = parsed;
      return absl::OkStatus();
    }
    case Kind::kBool: {
      const std::string lower = absl::AsciiStrToLower(value);
      if (lower == "true" || lower == "1" || lower == "yes") {
        *flag.bool_target = true;
      } else if (lower == "false" || lower == "0" || lower == "no") {
        *flag.bool_target = false;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            dashed, ": expected true or false, got '", value, "'"));
      }
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unhandled flag kind");
}

absl::Status FlagParser::Parse(const std::vector<std::string>& args) {
  help_requested_ = false;
  for (Flag& flag : flags_) flag.seen = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.size() <= 2 || arg.compare(0, 2, "--") != 0) {
      if (arg.size() > 1 && arg[0] == '-') {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag ", arg, " (flags are written --name)"));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected argument '", arg, "' (this command takes only flags)"));
    }
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(2, equals - 2);
    Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (flag->seen) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " given more than once"));
    }
    flag->seen = true;
    if (flag->kind == Kind::kBool && equals == std::string::npos) {
      *flag->bool_target = true;
      continue;
    }
    std::string value;
    if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (i + 1 < args.size() && args[i + 1].compare(0, 2, "--") != 0) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " needs a value (--", name, " ",
                       flag->value_name, ")"));
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " needs a non-empty value (--", name,
                       " ", flag->value_name, ")"));
    }
    if (absl::Status status = SetValue(*flag, value); !status.ok()) {
      return status;
    }
  }
  for (const Flag& flag : flags_) {
    if (flag.required && !flag.seen) {
      return absl::InvalidArgumentError(absl::StrCat(
          "missing required flag --", flag.name, " ", flag.value_name));
    }
  }
  return absl::OkStatus();
}

std::string FlagParser::Usage() const {
  std::string usage =
      absl::StrCat("Usage: harmamba ", command_, " ", synopsis_, "\n\n");
  AppendWrapped(description_, 0, 0, &usage);
  usage += "\nOptions:\n";
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Flag& flag : flags_) {
    std::string left = absl::StrCat("  --", flag.name);
    if (flag.kind != Kind::kBool) absl::StrAppend(&left, " ", flag.value_name);
    std::string help = flag.help;
    if (flag.required) {
      absl::StrAppend(&help, " Required.");
    } else if (!flag.default_text.empty()) {
      absl::StrAppend(&help, " Default: ", flag.default_text, ".");
    }
    rows.emplace_back(std::move(left), std::move(help));
  }
  rows.emplace_back("  -h, --help", "Print this help and exit.");
  size_t column = 0;
  for (const auto& row : rows) {
    if (row.first.size() + 2 <= kMaxFlagColumn) {
      column = std::max(column, row.first.size() + 2);
    }
  }
  for (const auto& [left, help] : rows) {
    usage += left;
    if (left.size() + 2 > column) {
      absl::StrAppend(&usage, "\n", std::string(column, ' '));
    } else {
      usage += std::string(column - left.size(), ' ');
    }
    AppendWrapped(help, column, column, &usage);
  }
  return usage;
}

std::optional<int> FlagParser::ParseOrReport(
    const std::vector<std::string>& args, std::ostream& out,
    std::ostream& err) {
  const absl::Status status = Parse(args);
  if (!status.ok()) {
    err << "harmamba " << command_ << ": error: " << status.message() << "\n\n"
        << Usage();
    return kExitUsageError;
  }
  if (help_requested_) {
    out << Usage();
    return kExitOk;
  }
  return std::nullopt;
}

int ReportRuntimeError(const std::string& command, const absl::Status& status,
                       std::ostream& err) {
  err << "harmamba " << command << ": error: " << status.message() << "\n";
  return kExitRuntimeError;
}

}  // namespace harmamba::cli
