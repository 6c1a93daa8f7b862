// `harmamba` command dispatch and the top-level usage text.
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "tools/commands.h"

namespace harmamba::cli {
namespace {

using CommandFunction = int (*)(const std::vector<std::string>&, std::ostream&,
                                std::ostream&);

struct Command {
  const char* name;
  CommandFunction run;
  const char* summary;
};

constexpr Command kCommands[] = {
    {"info", &RunInfo,
     "Show a model file's metadata, architecture and parameter count."},
    {"predict", &RunPredict,
     "Classify the windows of a .npy, .f32 or .csv file."},
    {"eval", &RunEval,
     "Accuracy, F1 and confusion matrix on a labelled dataset split."},
    {"init", &RunInit, "Write a freshly initialised model from a JSON config."},
#ifdef HARMAMBA_CLI_HAS_GRPC
    {"client", &RunClient,
     "Classify a file with a running server (Classify, ClassifyBatch, "
     "StreamClassify)."},
    {"loadgen", &RunLoadgenCommand,
     "Load a running server; throughput, latency percentiles, errors."},
    {"health", &RunHealth,
     "gRPC health check of a running server (exit 0 when SERVING)."},
#endif
    {"train", &RunTrain,
     "Train a model on a labelled dataset; writes a servable file."},
};

const Command* FindCommand(const std::string& name) {
  for (const Command& command : kCommands) {
    if (name == command.name) return &command;
  }
  return nullptr;
}

}  // namespace

std::string MainUsage() {
  std::string usage =
      "Usage: harmamba COMMAND [flags]\n"
      "\n"
      "Tools for HARMamba activity-recognition models.\n"
      "\n"
      "Commands:\n";
  for (const Command& command : kCommands) {
    usage += absl::StrFormat("  %-9s %s\n", command.name, command.summary);
  }
  usage +=
      "  help      Show this help; 'harmamba help COMMAND' shows a command's "
      "flags.\n"
      "\n"
      "Run 'harmamba COMMAND --help' for the flags of a command.\n"
      "Exit codes: 0 success, 1 runtime error (the message names the file and "
      "the\nproblem), 2 usage error (unknown flag, missing value or required "
      "flag).\n";
  return usage;
}

int RunHarmamba(const std::vector<std::string>& args, std::ostream& out,
                std::ostream& err) {
  if (args.empty()) {
    err << "harmamba: error: missing command\n\n" << MainUsage();
    return kExitUsageError;
  }
  const std::string& name = args[0];
  if (name == "help" || name == "-h" || name == "--help") {
    if (args.size() == 1) {
      out << MainUsage();
      return kExitOk;
    }
    const Command* command = FindCommand(args[1]);
    if (command == nullptr || args.size() > 2) {
      err << "harmamba help: error: "
          << (command == nullptr ? "unknown command '" + args[1] + "'"
                                 : "expected one command name")
          << "\n\n"
          << MainUsage();
      return kExitUsageError;
    }
    return command->run({"--help"}, out, err);
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) {
    err << "harmamba: error: unknown command '" << name << "'\n\n"
        << MainUsage();
    return kExitUsageError;
  }
  return command->run(std::vector<std::string>(args.begin() + 1, args.end()),
                      out, err);
}

}  // namespace harmamba::cli
