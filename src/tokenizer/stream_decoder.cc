#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace tqlm::tokenizer {

std::string StreamDecoder::Push(TokenId id) {
  pending_ += tokenizer_->Piece(id, render_special_);
  const size_t hold = IncompleteUtf8Tail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return ready;
}

std::string StreamDecoder::Flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace tqlm::tokenizer
