// layerskip-coordinator: the gRPC (and OpenAI HTTP) inference service with continuous batching over the
// engine in this process or a pipeline of workers (coordinator_main.h).
#include "coordinator/coordinator_main.h"

int main(int argc, char** argv) { return layerskip::coordinator::RunCoordinator(argc, argv); }
