/* LD_PRELOAD shim for the checks benchmark: answers keepalived's IPVS socket options
 * (IP_VS_SO_*, the interface libipvs falls back to when the kernel has no IPVS generic netlink
 * family) as a kernel with an empty IPVS table would, so that keepalived's checker process
 * runs its health checks on a kernel built without IPVS. Every other socket option goes to
 * libc. Nothing is programmed anywhere: a SET succeeds, a GET reports no services. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/ip_vs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int is_ipvs(int level, int opt)
{
	return level == IPPROTO_IP && opt >= IP_VS_BASE_CTL && opt <= IP_VS_SO_SET_MAX;
}

int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	static int (*real)(int, int, int, void *, socklen_t *);

	if (!is_ipvs(level, opt)) {
		if (!real)
			real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
		return real(fd, level, opt, val, len);
	}
	switch (opt) {
	case IP_VS_SO_GET_VERSION:
		snprintf(val, *len, "IP Virtual Server version 1.2.1 (size=4096)");
		return 0;
	case IP_VS_SO_GET_INFO: {
		struct ip_vs_getinfo info = { .version = 0x010201, .size = 4096, .num_services = 0 };

		if (*len < sizeof info) {
			errno = EINVAL;
			return -1;
		}
		memcpy(val, &info, sizeof info);
		return 0;
	}
	case IP_VS_SO_GET_SERVICES: {
		struct ip_vs_get_services *s = val;

		if (*len < sizeof *s) {
			errno = EINVAL;
			return -1;
		}
		s->num_services = 0;
		return 0;
	}
	default:
		memset(val, 0, *len);
		return 0;
	}
}

int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	static int (*real)(int, int, int, const void *, socklen_t);

	if (!is_ipvs(level, opt)) {
		if (!real)
			real = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
		return real(fd, level, opt, val, len);
	}
	return 0;
}
