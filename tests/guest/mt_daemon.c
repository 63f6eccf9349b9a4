// SPDX-License-Identifier: GPL-2.0
/*
 * mt_daemon - the userspace alternative to migtime, for `make bench`.
 *
 * What a user would write instead of a kernel module: poll the page through
 * the ivshmem BAR2 sysfs resource file every period_ms (default 100) and,
 * when migration_seq changes, step CLOCK_REALTIME by the pending total with
 * clock_adjtime(ADJ_SETOFFSET) (which also resets NTP state and fires
 * cancel-on-set timers), then write the guest area the way the module does,
 * so the host measures both the same way. Runs until killed. Started by
 * /init in the background when the command line has mt.daemon=1.
 */
#define _GNU_SOURCE
#include <sys/timex.h>

#include "mt_page.h"

static void ack(uint64_t seq, uint32_t outcome, int64_t intended, int64_t applied,
		int64_t total, uint64_t events)
{
	uint32_t c = MT_GUEST(seq_count);

	MT_GUEST(seq_count) = c | 1;
	__sync_synchronize();
	MT_GUEST(outcome) = outcome;
	MT_GUEST(ack_seq) = seq;
	MT_GUEST(intended_ns) = intended;
	MT_GUEST(applied_ns) = applied;
	MT_GUEST(applied_total_ns) = total;
	MT_GUEST(ack_realtime_ns) = mt_clock_ns(CLOCK_REALTIME);
	MT_GUEST(events) = events;
	__sync_synchronize();
	MT_GUEST(seq_count) = (c | 1) + 1;
}

int main(int argc, char **argv)
{
	long period_ms = 100;
	struct mt_host_view base, h;
	uint64_t events = 0;

	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "period_ms=", 10))
			period_ms = atol(argv[i] + 10);
		else {
			fprintf(stderr, "mt_daemon: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (period_ms < 1 || mt_map_page(1) || mt_read_host(&base, 1000000)) {
		fprintf(stderr, "mt_daemon: cannot start\n");
		return 1;
	}
	fprintf(stderr, "mt_daemon: polling every %ld ms from seq %llu\n", period_ms,
		(unsigned long long)base.seq);
	for (;;) {
		usleep(period_ms * 1000);
		if (mt_read_host(&h, 64) || (h.seq == base.seq && h.total == base.total))
			continue;
		if (h.seq > base.seq) {
			int64_t pending = h.total - base.total, off0, off1;
			struct timex tx = {
				.modes = ADJ_SETOFFSET | ADJ_NANO,
				.time.tv_sec = pending / MT_NSEC_PER_SEC,
				.time.tv_usec = pending % MT_NSEC_PER_SEC,
			};

			/* ADJ_SETOFFSET wants 0 <= tv_usec (ns here) < 1e9. */
			if (tx.time.tv_usec < 0) {
				tx.time.tv_sec -= 1;
				tx.time.tv_usec += MT_NSEC_PER_SEC;
			}
			off0 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
			if (clock_adjtime(CLOCK_REALTIME, &tx) < 0) {
				fprintf(stderr, "mt_daemon: clock_adjtime: %s\n", strerror(errno));
				ack(h.seq, MIGTIME_OUTCOME_FAILED, pending, 0, base.total, ++events);
			} else {
				off1 = mt_clock_offset(CLOCK_REALTIME, CLOCK_MONOTONIC);
				ack(h.seq, pending ? MIGTIME_OUTCOME_STEPPED : MIGTIME_OUTCOME_NOTIFIED,
				    pending, off1 - off0, h.total, ++events);
			}
		}
		base = h;
	}
}
