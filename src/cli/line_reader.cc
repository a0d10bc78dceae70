#include "cli/line_reader.h"

#include <editline/readline.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace tqlm::cli {
namespace {

std::atomic<bool> g_interrupt{false};
struct sigaction g_old_sigint {};

void OnSigint(int) { g_interrupt.store(true); }

// libedit's character source. A Ctrl-C that lands after the prompt is printed but before the
// editor's read() starts interrupts no system call, so a blocking read would wait for the next
// key with the flag set; polling with a short timeout sees the flag either way. Returning EOF
// makes readline() return, and Read() reports the interrupt.
int GetcOrInterrupt(FILE* in) {
  const int fd = fileno(in);
  for (;;) {
    if (g_interrupt.load()) return EOF;
    pollfd p{fd, POLLIN, 0};
    const int r = poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) return EOF;
    if (r <= 0) continue;
    unsigned char c;
    const ssize_t n = read(fd, &c, 1);
    if (n == 1) return c;
    if (n == 0 || errno != EINTR) return EOF;
  }
}

}  // namespace

LineReader::LineReader(std::string history_file)
    : tty_(isatty(STDIN_FILENO) != 0), history_file_(std::move(history_file)) {
  // No SA_RESTART: a blocked read returns, so Ctrl-C at the prompt is seen at once.
  struct sigaction sa {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_sigint);
  if (tty_) {
    rl_getc_function = GetcOrInterrupt;  // before readline() first sets the editor up
    using_history();
    stifle_history(1000);
    if (!history_file_.empty()) read_history(history_file_.c_str());
  }
}

LineReader::~LineReader() {
  if (tty_ && !history_file_.empty()) write_history(history_file_.c_str());
  sigaction(SIGINT, &g_old_sigint, nullptr);
}

bool LineReader::TakeInterrupt() { return g_interrupt.exchange(false); }

LineReader::Input LineReader::Read(const std::string& prompt) {
  Input in;
  // A Ctrl-C pressed while the last answer was being printed counts for this prompt.
  if (g_interrupt.exchange(false)) {
    in.interrupted = true;
    return in;
  }
  if (tty_) {
    char* line = readline(prompt.c_str());
    if (g_interrupt.exchange(false)) {
      in.interrupted = true;
      std::free(line);
      return in;
    }
    if (line == nullptr) return in;
    in.line = line;
    if (!in.line->empty()) add_history(line);
    std::free(line);
    return in;
  }
  std::fputs(prompt.c_str(), stderr);
  std::fflush(stderr);
  std::string s;
  if (std::getline(std::cin, s)) {
    in.line = std::move(s);
  } else if (g_interrupt.exchange(false)) {
    in.interrupted = true;
    std::cin.clear();
  }
  return in;
}

}  // namespace tqlm::cli
