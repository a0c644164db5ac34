/*
 * Numeric address text + port → sockaddr, for every part of the addon that binds or connects
 * (sock_filter.c, tcp_relay.c, udp_relay.c). No name resolution: JS hands numeric text only.
 */
#ifndef SGEMU_SOCKADDR_H
#define SGEMU_SOCKADDR_H
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* family 4 or 6, or 0 for whichever the text is. Returns the sockaddr's length, or 0 when the
 * text is not an address of that family. */
static inline socklen_t make_addr(int family, const char *text, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (family != 6) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, text, &a->sin_addr) == 1) {
      a->sin_family = AF_INET;
      a->sin_port = htons((unsigned short)port);
      return sizeof(*a);
    }
    if (family == 4) return 0;
  }
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET6, text, &a->sin6_addr) != 1) return 0;
  a->sin6_family = AF_INET6;
  a->sin6_port = htons((unsigned short)port);
  return sizeof(*a);
}

#endif
