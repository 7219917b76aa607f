// stub, replaced by its implementation
#include "app/cli.h"
namespace conflux::app {
int cmd_bench(int, char**) { throw CliError("not implemented yet"); }
}
