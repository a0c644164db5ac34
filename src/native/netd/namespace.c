/*
 * sgemu-netd --namespace: the helper's private-network mode, behind `sgemu exec` (SPEC.md §8,
 * native-notes/user-namespace.md). Runs WITHOUT any privilege on the host: an ordinary user may
 * create a user + network + PID namespace, and holds every capability inside it (and only there).
 *
 *   ns_enter   unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID), map the caller's own uid and
 *              gid to themselves (so the command runs as the caller), bring lo up
 *   ns_addr    give lo an instance's address (any IPv4 /32 or IPv6 /128: the namespace has no
 *              other interface, so nothing it holds is reachable from, or reaches, the outside)
 *   ns_exec    fork PID 1 of the new PID namespace, which forks the command and waits; when the
 *              command ends PID 1 exits with its status and the kernel kills whatever the command
 *              left behind (nothing outlives `sgemu exec`)
 *   ns_signal  the daemon's SIGTERM / SIGINT, forwarded to the command through PID 1
 * The daemon stays in the host namespace (backends reachable there) and gets the namespace's
 * sockets from the helper over the socketpair, as in host mode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <linux/capability.h>

#include "netd.h"

static pid_t init_pid = -1;
static int aliases;

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  int err = errno;
  close(fd);
  errno = err;
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

int ns_enter(void) {
  char map[64];
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID) != 0) return -1;
  snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
  if (write_file("/proc/self/setgroups", "deny") != 0 || write_file("/proc/self/uid_map", map) != 0) return -1;
  snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
  if (write_file("/proc/self/gid_map", map) != 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) { ifr.ifr_flags |= IFF_UP | IFF_RUNNING; rc = ioctl(s, SIOCSIFFLAGS, &ifr); }
  int err = errno;
  close(s);
  errno = err;
  return rc;
}

/* IPv4 as an alias of lo (lo:N) with a /32 mask; IPv6 as a /128 on lo (struct in6_ifreq). */
int ns_addr(int family, const uint8_t *addr) {
  int s, rc, err;
  if (family == 4) {
    struct ifreq ifr;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    if (addr[0] == 127) return 0;            /* 127.0.0.0/8 is local already */
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo:%d", ++aliases);
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, addr, 4);
    if ((s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) return -1;
    rc = ioctl(s, SIOCSIFADDR, &ifr);
    if (rc == 0) {
      memset(&sin->sin_addr, 0xff, 4);
      rc = ioctl(s, SIOCSIFNETMASK, &ifr);
    }
  } else {
    struct { struct in6_addr a; uint32_t prefixlen; int ifindex; } r6;
    static const uint8_t v6_loopback[16] = { 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,1 };
    if (memcmp(addr, v6_loopback, 16) == 0) return 0;
    memcpy(&r6.a, addr, 16);
    r6.prefixlen = 128;
    r6.ifindex = (int)if_nametoindex("lo");
    if ((s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) return -1;
    rc = ioctl(s, SIOCSIFADDR, &r6);
  }
  err = errno;
  close(s);
  errno = err;
  return rc == 0 || errno == EEXIST ? 0 : -1;
}

static volatile pid_t cmd_pid = -1;
/* PID 1 forwards what the daemon sends (SI_USER); what the terminal sends reaches the command's
 * process group directly, so it is not sent twice. */
static void forward(int sig, siginfo_t *si, void *ctx) {
  (void)ctx;
  if (si->si_code != SI_KERNEL && cmd_pid > 0) kill(cmd_pid, sig);
}

static void init_main(const char *cwd, char **argv, char **envp) {
  static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
  struct sigaction sa;
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2];
  int status = 0;
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);        /* the helper gone: the namespace goes */
  memset(d, 0, sizeof(d));
  syscall(SYS_capset, &h, d);                       /* the command gets no capability */
  setpgid(0, 0);
  if (isatty(0)) { signal(SIGTTOU, SIG_IGN); tcsetpgrp(0, getpgrp()); signal(SIGTTOU, SIG_DFL); }
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = forward;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaction(sigs[i], &sa, NULL);
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) signal(sigs[i], SIG_DFL);
    if (cwd[0] && chdir(cwd) != 0) { fprintf(stderr, "sgemu exec: cannot enter %s: %s\n", cwd, strerror(errno)); _exit(126); }
    execvpe(argv[0], argv, envp);
    fprintf(stderr, "sgemu exec: %s: %s\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  if (pid < 0) _exit(126);
  cmd_pid = pid;
  for (;;) {                                        /* reap everything; leave with the command */
    pid_t w = waitpid(-1, &status, 0);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) _exit(126);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* tail: cwd \0 arg0 \0 ... argN \0 \0 env0 \0 ... envM \0 (each part NUL-terminated). */
int ns_exec(const char *tail, size_t len) {
  char *argv[1024], *envp[4096];
  int argc = 0, envc = 0;
  const char *p = tail, *end = tail + len;
  if (init_pid > 0) { errno = EBUSY; return -1; }
  if (len == 0 || tail[len - 1] != '\0') { errno = EINVAL; return -1; }
  const char *cwd = p;
  p += strlen(p) + 1;
  while (p < end && *p && argc < 1023) { argv[argc++] = (char *)p; p += strlen(p) + 1; }
  if (argc == 0 || p >= end || *p) { errno = EINVAL; return -1; }
  p++;
  while (p < end && envc < 4095) { envp[envc++] = (char *)p; p += strlen(p) + 1; }
  argv[argc] = NULL;
  envp[envc] = NULL;
  pid_t pid = fork();                               /* PID 1 of the new PID namespace */
  if (pid < 0) return -1;
  if (pid == 0) {
    syscall(SYS_close_range, 3, ~0U, 0);            /* the command sees none of our channels */
    init_main(cwd, argv, envp);
  }
  init_pid = pid;
  return pid;
}

int ns_signal(int sig) {
  if (init_pid <= 0) { errno = ESRCH; return -1; }
  if (sig != SIGTERM && sig != SIGINT && sig != SIGHUP && sig != SIGQUIT && sig != SIGKILL && sig != SIGUSR1 && sig != SIGUSR2) { errno = EINVAL; return -1; }
  return kill(init_pid, sig);
}

/* The command's exit status once PID 1 has exited (0..255), -1 while it runs or before exec. */
int ns_reap(void) {
  int status;
  if (init_pid <= 0) return -1;
  if (waitpid(init_pid, &status, WNOHANG) != init_pid) return -1;
  init_pid = 0;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

pid_t ns_init_pid(void) { return init_pid; }
