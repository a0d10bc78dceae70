// Interactive input for `tqlm chat`: line editing and history through libedit when stdin is a
// terminal, plain lines otherwise (pipes, tests), and Ctrl-C as a request to stop, not an exit.
#pragma once

#include <optional>
#include <string>

namespace tqlm::cli {

class LineReader {
 public:
  // Installs the SIGINT handler for the reader's lifetime (restored by the destructor) and,
  // on a terminal, loads the history file (kept to its last 1000 lines).
  explicit LineReader(std::string history_file);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  struct Input {
    std::optional<std::string> line;  // nullopt: end of input (Ctrl-D) or interrupted
    bool interrupted = false;         // Ctrl-C at the prompt
  };
  Input Read(const std::string& prompt);

  // Ctrl-C pressed since the last call (then clears it): polled while a reply is generated.
  static bool TakeInterrupt();

 private:
  bool tty_;
  std::string history_file_;
};

}  // namespace tqlm::cli
