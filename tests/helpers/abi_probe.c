/*
 * Prints the C ABI facts lib/server/udp/abi.ts claims, one per line:
 *   size STRUCT N | align STRUCT N | field STRUCT.FIELD OFFSET SIZE |
 *   scalar TYPE N | const NAME VALUE
 * lib/server/udp/abi_test.ts builds it with gcc into a temporary folder and
 * compares every line with abi.ts. Built at test time only; no binary is kept.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define STRUCT(s) \
  printf("size %s %zu\n", #s, sizeof(struct s)); \
  printf("align %s %zu\n", #s, _Alignof(struct s))
#define FIELD(s, f) \
  printf("field %s.%s %zu %zu\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
#define SCALAR(t, name) printf("scalar %s %zu\n", name, sizeof(t))
#define CONST(c) printf("const %s %lld\n", #c, (long long)(c))

int main(void) {
  STRUCT(sockaddr_in);
  FIELD(sockaddr_in, sin_family);
  FIELD(sockaddr_in, sin_port);
  FIELD(sockaddr_in, sin_addr);

  STRUCT(sockaddr_in6);
  FIELD(sockaddr_in6, sin6_family);
  FIELD(sockaddr_in6, sin6_port);
  FIELD(sockaddr_in6, sin6_flowinfo);
  FIELD(sockaddr_in6, sin6_addr);
  FIELD(sockaddr_in6, sin6_scope_id);

  STRUCT(iovec);
  FIELD(iovec, iov_base);
  FIELD(iovec, iov_len);

  STRUCT(msghdr);
  FIELD(msghdr, msg_name);
  FIELD(msghdr, msg_namelen);
  FIELD(msghdr, msg_iov);
  FIELD(msghdr, msg_iovlen);
  FIELD(msghdr, msg_control);
  FIELD(msghdr, msg_controllen);
  FIELD(msghdr, msg_flags);

  STRUCT(mmsghdr);
  FIELD(mmsghdr, msg_hdr);
  FIELD(mmsghdr, msg_len);

  STRUCT(pollfd);
  FIELD(pollfd, fd);
  FIELD(pollfd, events);
  FIELD(pollfd, revents);

  SCALAR(int, "int");
  SCALAR(short, "short");
  SCALAR(socklen_t, "socklen_t");
  SCALAR(sa_family_t, "sa_family_t");
  SCALAR(in_port_t, "in_port_t");
  SCALAR(size_t, "size_t");
  SCALAR(ssize_t, "ssize_t");
  SCALAR(nfds_t, "nfds_t");
  SCALAR(eventfd_t, "eventfd_t");
  SCALAR(void *, "void*");

  CONST(AF_INET);
  CONST(AF_INET6);
  CONST(SOCK_DGRAM);
  CONST(SOCK_NONBLOCK);
  CONST(SOCK_CLOEXEC);
  CONST(IPPROTO_UDP);
  CONST(IPPROTO_IPV6);
  CONST(IPV6_V6ONLY);
  CONST(SOL_SOCKET);
  CONST(SO_REUSEADDR);
  CONST(SO_RCVBUF);
  CONST(SO_SNDBUF);
  CONST(MSG_CTRUNC);
  CONST(MSG_TRUNC);
  CONST(MSG_DONTWAIT);
  CONST(POLLIN);
  CONST(POLLOUT);
  CONST(POLLERR);
  CONST(POLLHUP);
  CONST(POLLNVAL);
  CONST(EFD_NONBLOCK);
  CONST(EFD_CLOEXEC);
  CONST(EPERM);
  CONST(EINTR);
  CONST(EBADF);
  CONST(EAGAIN);
  CONST(EWOULDBLOCK);
  CONST(ENOMEM);
  CONST(EACCES);
  CONST(EFAULT);
  CONST(EINVAL);
  CONST(ENFILE);
  CONST(EMFILE);
  CONST(EMSGSIZE);
  CONST(EAFNOSUPPORT);
  CONST(EADDRINUSE);
  CONST(EADDRNOTAVAIL);
  CONST(ENETUNREACH);
  CONST(ENOBUFS);
  CONST(ECONNREFUSED);
  CONST(EHOSTUNREACH);
  return 0;
}
