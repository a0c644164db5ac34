/* What sgemu-netd.c calls in namespace.c (the unprivileged `sgemu exec` mode). */
#ifndef SGEMU_NETD_H
#define SGEMU_NETD_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int ns_enter(void);
int ns_addr(int family, const uint8_t *addr);
int ns_exec(const char *tail, size_t len);
int ns_signal(int sig);
int ns_reap(void);
pid_t ns_init_pid(void);

#endif
