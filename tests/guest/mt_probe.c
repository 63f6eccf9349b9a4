// SPDX-License-Identifier: GPL-2.0
/*
 * mt_probe - the guest half of the harness's clock comparison: a UDP
 * responder that stamps each request with the guest's CLOCK_REALTIME.
 *
 *   mt_probe [port=N]     (default 5123; runs until killed)
 *
 * The host (tests/harness/src/pairing.rs) sends a request through QEMU's
 * user-mode network (a hostfwd per QEMU); the reply carries the request's
 * 16 bytes back, then two little-endian int64: the kernel's receive
 * timestamp of the request (SO_TIMESTAMPNS, CLOCK_REALTIME) and the
 * CLOCK_REALTIME just before the reply is sent. With the host's send and
 * receive times this is an NTP-style exchange: the offset is exact up to
 * half the round trip's network delay, which the host states as the
 * pairing error of each sample. Not a test: it prints nothing but errors
 * and is not started by /init but by the program that wants it (mt_chrony).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define REQ_LEN 16
#define REPLY_LEN (REQ_LEN + 16)

static int64_t realtime_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void put_le64(uint8_t *p, int64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	int port = 5123, on = 1, fd;

	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "port=", 5)) {
			port = atoi(argv[i] + 5);
		} else {
			fprintf(stderr, "mt_probe: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	a.sin_port = htons(port);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		fprintf(stderr, "mt_probe: udp port %d: %s\n", port, strerror(errno));
		return 1;
	}
	for (;;) {
		uint8_t buf[REPLY_LEN];
		char ctl[CMSG_SPACE(sizeof(struct timespec))];
		struct sockaddr_in from;
		struct iovec iov = { .iov_base = buf, .iov_len = REQ_LEN };
		struct msghdr m = {
			.msg_name = &from, .msg_namelen = sizeof(from),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctl, .msg_controllen = sizeof(ctl),
		};
		ssize_t n = recvmsg(fd, &m, 0);
		int64_t rx = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "mt_probe: recvmsg: %s\n", strerror(errno));
			return 1;
		}
		if (n != REQ_LEN)
			continue;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
				struct timespec ts;

				memcpy(&ts, CMSG_DATA(c), sizeof(ts));
				rx = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
			}
		}
		/* No kernel timestamp: the read time, later than the arrival (the
		 * host still bounds the error by half the round trip). */
		if (!rx)
			rx = realtime_ns();
		put_le64(buf + REQ_LEN, rx);
		put_le64(buf + REQ_LEN + 8, realtime_ns());
		sendto(fd, buf, REPLY_LEN, 0, (struct sockaddr *)&from, m.msg_namelen);
	}
}
