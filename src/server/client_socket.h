// Noticing that the client of a request has gone away while the handler waits for the answer.
// cpp-httplib 0.11 (Debian bookworm) gives handlers no access to their connection (newer
// versions have Request::is_connection_closed), but it does give the connection's local and
// remote address and port, which name exactly one open TCP socket of this process: the one
// the handler's thread is serving, which stays open until the handler returns.
#pragma once

#include <string>

namespace tqlm::server {

class ClientSocket {
 public:
  // Finds the process's TCP socket connected from remote_addr:remote_port to
  // local_addr:local_port (numeric addresses, as httplib's Request holds them). Not found
  // (-1): Gone() is always false.
  ClientSocket(const std::string& local_addr, int local_port, const std::string& remote_addr,
               int remote_port);

  bool found() const { return fd_ >= 0; }
  // The peer closed or reset the connection. Data sent early (a pipelined next request) is
  // not read: the socket only is peeked at, so httplib still reads it afterwards.
  bool Gone() const;

 private:
  int fd_ = -1;
};

}  // namespace tqlm::server
