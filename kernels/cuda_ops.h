#pragma once
// Moved: each CUDA op is declared in its own header beside the CPU op (kernels/<op>.h; shared types in
// kernels/device_weight.h). This header only forwards to them until the includes are updated.
#include "kernels/attention.h"
#include "kernels/device_weight.h"
#include "kernels/embedding.h"
#include "kernels/fill.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "kernels/swiglu.h"
