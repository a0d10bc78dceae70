// The results of an evaluation sweep: a JSONL file, one JSON object per line and per cell,
// each with the cell's configuration hash under "hash". Rows are appended with one write()
// followed by fsync(), so a run killed at any moment leaves every earlier row intact and at
// most a truncated last line, which Open ignores (and reports) and the next Append cuts off.
#pragma once

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace tqlm::eval {

class ResultsFile {
 public:
  // Loads the rows of `path` (a missing file is an empty result set). Throws tqlm::Error if a
  // complete line (one ending in a newline) is not a JSON object with a string "hash".
  explicit ResultsFile(std::string path);

  const std::string& path() const { return path_; }
  const std::vector<nlohmann::json>& rows() const { return rows_; }
  bool Has(const std::string& hash) const { return hashes_.count(hash) > 0; }
  // Bytes of an unterminated last line found by the constructor (a run killed mid-write).
  size_t truncated_bytes() const { return truncated_bytes_; }

  // Appends `row` (which must carry "hash") durably; throws tqlm::Error on I/O failure.
  void Append(const nlohmann::json& row);

 private:
  std::string path_;
  std::vector<nlohmann::json> rows_;
  std::set<std::string> hashes_;
  size_t valid_bytes_ = 0;      // length of the file's valid prefix
  size_t truncated_bytes_ = 0;
};

}  // namespace tqlm::eval
