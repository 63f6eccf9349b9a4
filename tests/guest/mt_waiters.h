/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Threads blocked in read() or poll() on /dev/migtime, for mt_readers: start
 * them, wait until each is asleep in the kernel, join them with a deadline.
 * The includer defines WAITERS (how many the array holds, plus two).
 */
#ifndef MT_WAITERS_H
#define MT_WAITERS_H

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"

struct waiter {
	pthread_t th;
	int fd, use_poll;
	volatile pid_t tid;
	volatile int armed; /* about to block */
	ssize_t n;
	int err;
	unsigned char buf[128];
};

static struct waiter w[WAITERS + 2];

static void *waiter_main(void *arg)
{
	struct waiter *x = arg;

	x->tid = (pid_t)syscall(SYS_gettid);
	if (x->use_poll) {
		struct pollfd p = { .fd = x->fd, .events = POLLIN };

		x->armed = 1;
		if (poll(&p, 1, 30000) != 1 || !(p.revents & POLLIN)) {
			x->n = -1;
			x->err = p.revents ? EIO : ETIMEDOUT;
			return NULL;
		}
	} else {
		x->armed = 1;
	}
	x->n = read(x->fd, x->buf, sizeof(x->buf));
	x->err = x->n < 0 ? errno : 0;
	return NULL;
}

/* Whether thread `tid` of this process is sleeping (state S). */
static int sleeping(pid_t tid)
{
	char p[64], s[256];
	FILE *f;
	char *r;

	snprintf(p, sizeof(p), "/proc/self/task/%d/stat", tid);
	f = fopen(p, "r");
	if (!f)
		return 0;
	r = fgets(s, sizeof(s), f);
	fclose(f);
	r = r ? strrchr(s, ')') : NULL;
	return r && r[1] == ' ' && r[2] == 'S';
}

/* Starts waiters [from, to) and waits until each is asleep in read/poll. */
static int start_waiters(int from, int to)
{
	for (int i = from; i < to; i++) {
		w[i].tid = 0;
		w[i].armed = 0;
		w[i].n = -2;
		if (pthread_create(&w[i].th, NULL, waiter_main, &w[i]))
			ksft_exit_fail_msg("pthread_create: %s\n", strerror(errno));
	}
	for (int tries = 0; tries < 1000; tries++) {
		int n = 0;

		for (int i = from; i < to; i++)
			n += w[i].armed && w[i].tid && sleeping(w[i].tid);
		if (n == to - from) {
			usleep(200000); /* well inside read()/poll() */
			return 1;
		}
		usleep(10000);
	}
	return 0;
}

/* Joins waiters [from, to) within `secs`; returns how many finished. */
static int join_waiters(int from, int to, int secs)
{
	struct timespec dl;
	int n = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs + 1; /* CLOCK_REALTIME: the update steps it by ms */
	for (int i = from; i < to; i++)
		n += !pthread_timedjoin_np(w[i].th, NULL, &dl);
	return n;
}

#endif /* MT_WAITERS_H */
