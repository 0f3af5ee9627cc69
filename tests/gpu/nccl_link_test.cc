// The NCCL data path on one GPU (label "gpu"; skipped without a device). NCCL refuses two ranks on one
// device, so the two-rank NcclTransport between stages has not run; this checks what one device allows: a
// one-rank communicator created non-blocking, a send to itself and a receive from itself in one group,
// polled with ncclCommGetAsyncError, the bytes intact; and that an id of the wrong size is refused.
#include <cuda_runtime.h>

#include <gtest/gtest.h>

#include "transport/nccl_link.h"

namespace layerskip {
namespace {

bool HaveDevice() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(NcclLinkGpu, OneRankSendReceiveLoopback) {
  if (!HaveDevice()) GTEST_SKIP() << "no CUDA device";
  for (size_t floats : {size_t{1}, size_t{4096}, size_t{1} << 22}) {
    const absl::Status s = NcclLoopbackCheck(0, floats);
    EXPECT_TRUE(s.ok()) << floats << " floats: " << s;
  }
}

TEST(NcclLinkGpu, MalformedIdIsRefused) {  // checked before any device call: runs without a GPU too
  auto link = NcclLink::Start("not an id", 0, 2, 0);
  EXPECT_EQ(link.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace layerskip
