// libFuzzer target for the models' blob decoders (every model's Deserialize
// and the prequential metrics' ReadFrom): none may crash, read out of bounds
// or hit UB on any input; an accepted blob must re-encode to bytes that decode
// again identically, and the decoded model must survive an update. Input
// format: model_blob_input.h (byte 0 picks the decoder, byte 1 whole blob or
// bare payload).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model_blob_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)crmstream::fuzz::DecodeModelInput(bytes);
  return 0;
}
