#include "eval/results_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tqlm/error.h"

namespace tqlm::eval {

ResultsFile::ResultsFile(std::string path) : path_(std::move(path)) {
  std::ifstream in(path_, std::ios::binary);
  if (!in) return;  // a new results file
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  size_t start = 0;
  int line_no = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {  // no newline: the last write was cut short
      truncated_bytes_ = text.size() - start;
      break;
    }
    ++line_no;
    const std::string_view line(text.data() + start, nl - start);
    start = nl + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object() || !row.contains("hash") || !row["hash"].is_string())
      throw Error(fmt::format("{} line {}: not a results row (a JSON object with a \"hash\"); "
                              "fix or remove the line",
                              path_, line_no));
    hashes_.insert(row["hash"].get<std::string>());
    rows_.push_back(std::move(row));
  }
  valid_bytes_ = start;
}

void ResultsFile::Append(const nlohmann::json& row) {
  if (!row.contains("hash") || !row["hash"].is_string())
    throw Error("results row without a \"hash\"");
  // dump() escapes newlines (one line per row); invalid UTF-8 in generated text is replaced.
  const std::string line =
      row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot open {} for writing: {}", path_, std::strerror(errno)));
  // Drop a truncated tail left by a killed run so that the new row starts its own line.
  if (truncated_bytes_ > 0) {
    if (::ftruncate(fd, off_t(valid_bytes_)) != 0) {
      ::close(fd);
      throw Error(fmt::format("cannot truncate {}: {}", path_, std::strerror(errno)));
    }
    truncated_bytes_ = 0;
  }
  size_t done = 0;
  while (done < line.size()) {  // one write() in practice; loop only on a short write
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      throw Error(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
    }
    done += size_t(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) throw Error(fmt::format("cannot fsync {}: {}", path_, std::strerror(errno)));
  valid_bytes_ += line.size();
  hashes_.insert(row["hash"].get<std::string>());
  rows_.push_back(row);
}

}  // namespace tqlm::eval
