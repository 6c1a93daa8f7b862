// The `harmamba` command-line tool; the commands live in harmamba_cli
// (tools/commands.h).
#include <iostream>
#include <string>
#include <vector>

#include "model/openblas_tuning.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  harmamba::ReexecWithTunedOpenBlasIfNeeded(argv);
  const std::vector<std::string> args(argv + 1, argv + argc);
  const int exit_code = harmamba::cli::RunHarmamba(args, std::cout, std::cerr);
  std::cout.flush();
  return exit_code;
}
