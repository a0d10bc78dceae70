// libFuzzer target for the KV calibration file parser (eval/calib_file.h): any input must
// either parse or throw tqlm::Error, never crash or hit undefined behaviour; what parses must
// serialize and parse back to the same text (the checksum covers every field).
//
//   scripts/fuzz.sh 60   (builds every target with clang, this one included, and runs each)
//   build-fuzz/fuzz_calib_file -dict=fuzz/calib_file.dict fuzz/corpus/calib_file
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "eval/calib_file.h"
#include "tqlm/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const tqlm::eval::CalibFile f = tqlm::eval::ParseCalibFile(text);
    const std::string again = tqlm::eval::SerializeCalibFile(f);
    if (tqlm::eval::SerializeCalibFile(tqlm::eval::ParseCalibFile(again)) != again) std::abort();
  } catch (const tqlm::Error&) {
  }
  return 0;
}
