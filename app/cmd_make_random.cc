// stub, replaced by its implementation
#include "app/cli.h"
namespace conflux::app {
int cmd_make_random(int, char**) { throw CliError("not implemented yet"); }
}
