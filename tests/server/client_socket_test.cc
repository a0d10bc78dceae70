// ClientSocket (src/server/client_socket.h) on real loopback TCP connections: it finds the
// accepted socket from the address pair an HTTP request carries, sees it alive while the
// client is connected (even with unread data waiting), and gone once the client closes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/client_socket.h"

namespace tqlm::server {
namespace {

int Port(int fd, bool peer) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (peer) getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len);
  else getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A listening socket, a client connected to it and the server's end of the connection.
struct Connection {
  int listener = -1, client = -1, served = -1;
  Connection() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(listener, 1);
    a.sin_port = htons(uint16_t(Port(listener, false)));
    client = socket(AF_INET, SOCK_STREAM, 0);
    connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a);
    served = accept(listener, nullptr, nullptr);
  }
  ~Connection() {
    for (int fd : {listener, client, served})
      if (fd >= 0) close(fd);
  }
  ClientSocket Find() const {
    return ClientSocket("127.0.0.1", Port(served, false), "127.0.0.1", Port(served, true));
  }
};

TEST(ClientSocket, SeesTheClientLeave) {
  Connection c;
  ASSERT_GE(c.served, 0);
  const ClientSocket s = c.Find();
  ASSERT_TRUE(s.found());
  EXPECT_FALSE(s.Gone());
  ASSERT_EQ(send(c.client, "GET", 3, 0), 3);  // unread data (a pipelined request) is no hang-up
  EXPECT_FALSE(s.Gone());
  char buf[3];
  EXPECT_EQ(recv(c.served, buf, 3, 0), 3);  // only peeked at: still there to read
  close(c.client);
  c.client = -1;
  EXPECT_TRUE(s.Gone());
}

TEST(ClientSocket, UnknownConnectionIsNeverGone) {
  Connection c;
  // The client's own end has the ports the other way round: no socket of ours matches this.
  const ClientSocket s("127.0.0.1", 1, "127.0.0.1", 2);
  EXPECT_FALSE(s.found());
  EXPECT_FALSE(s.Gone());
  EXPECT_FALSE(ClientSocket("", -1, "", -1).found());
}

}  // namespace
}  // namespace tqlm::server
