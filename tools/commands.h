// The sub-commands of the offline `harmamba` tool, callable in-process.
//
// Each Run* takes the arguments after the command name (e.g. {"--model",
// "m.safetensors", "--json"}), writes results to `out` and diagnostics,
// warnings and progress to `err`, and returns the process exit code:
// kExitOk (0), kExitRuntimeError (1: a file is missing or malformed, the input
// does not fit the model, ...; the message names the file and the problem) or
// kExitUsageError (2: unknown flag, missing value or required flag; the usage
// text follows the message). `--help` prints the usage to `out` and returns 0.
//
// The commands share no state; concurrent calls are safe as long as they do
// not write the same files.
#ifndef HARMAMBA_TOOLS_COMMANDS_H_
#define HARMAMBA_TOOLS_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

#include "tools/flag_parser.h"

namespace harmamba::cli {

// The whole tool: `args` is argv[1..] ({"predict", "--model", ...}).
// Dispatches on args[0]; "help" [COMMAND], "-h" and "--help" print usage.
int RunHarmamba(const std::vector<std::string>& args, std::ostream& out,
                std::ostream& err);

// The top-level usage text (the list of commands).
std::string MainUsage();

// harmamba info --model FILE [--json]
int RunInfo(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err);

// harmamba predict --model FILE --input FILE [--logits-out FILE.npy] [--json]
//   [--threads N] [--batch N] [--backend fast|reference] [--progress]
int RunPredict(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err);

// harmamba init --config FILE.json --out FILE [--seed N] [--force]
int RunInit(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err);

// harmamba eval --model FILE --data PATH [--split NAME] [--json]
//   [--threads N] [--batch N] [--backend fast|reference] [--progress]
int RunEval(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err);

#ifdef HARMAMBA_CLI_HAS_GRPC
// harmamba client --input FILE [--target HOST:PORT] [--rpc batch|classify|
//   stream] [--model NAME] [--batch N] [--pace realtime|fast] [--chunk N]
//   [--hop N] [--sample-rate-hz HZ] [--deadline-ms MS] [--tls] [--tls-ca FILE]
//   [--tls-server-name NAME] [--json]
int RunClient(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);

// harmamba loadgen [--target HOST:PORT] [--mode unary|batch|stream]
//   [--concurrency N,...] [--rate R,...] [--batch-size N] [--duration-s S]
//   [--warmup-s S] [--json-out FILE] [--csv-out FILE] ... (tools/loadgen.h)
int RunLoadgenCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err);
// harmamba health [--target HOST:PORT] [--service NAME] [--timeout-ms MS]
// Exit 0 only when the server reports SERVING.
int RunHealth(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);
#endif  // HARMAMBA_CLI_HAS_GRPC

// harmamba train --data PATH --out FILE [--epochs N] [--batch N] [--lr X]
//   [--seed N] [--channels A,B,C] [--val-subjects ID,... | --val-count K]
//   [--checkpoint-dir DIR] [--resume] [--stop-after N] [--threads N]
//   [--device cpu|cuda] [--path auto|fast|reference] [--name NAME] ...
int RunTrain(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err);

}  // namespace harmamba::cli

#endif  // HARMAMBA_TOOLS_COMMANDS_H_
