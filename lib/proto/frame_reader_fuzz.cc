// FrameReader: byte 0 picks the limit, byte 1 the push size; the rest is the
// stream. Checks the frames against a one-shot parse of the same bytes.
#include "proto/framing.h"
#include "proto/fuzz_util.h"

using namespace qrexec::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t max_body = size_t{data[0]} * 64;
  const size_t step = size_t{data[1]} % 32 + 1;
  auto stream = fuzz::AsSpan(data + 2, size - 2);
  FrameReader reader(max_body);
  size_t offset = 0;  // where the next expected frame starts in `stream`
  bool failed = false;
  for (size_t at = 0; at < stream.size() && !failed; at += step) {
    auto st = reader.Push(stream.subspan(at, std::min(step, stream.size() - at)));
    while (auto m = reader.Pop()) {
      Header expected = Header::Decode(stream.subspan(offset).first<kHeaderSize>());
      fuzz::Require(m->header.untrusted_type == expected.untrusted_type);
      fuzz::Require(m->header.untrusted_len == expected.untrusted_len &&
                    m->body.size() == expected.untrusted_len);
      fuzz::Require(m->body.size() <= max_body);
      fuzz::Require(
          std::equal(m->body.begin(), m->body.end(), stream.begin() + kHeaderSize + offset));
      offset += kHeaderSize + m->body.size();
    }
    failed = !st;
  }
  if (failed) {
    // The failing header is the one right after the last delivered frame.
    Header bad = Header::Decode(stream.subspan(offset).first<kHeaderSize>());
    fuzz::Require(bad.untrusted_len > max_body && !reader.Finish());
  } else {
    fuzz::Require(reader.Finish().has_value() == (offset == stream.size()));
  }
  return 0;
}
