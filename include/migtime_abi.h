/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * migtime paravirtual clock page, ABI version 1 — for VMM authors and guest
 * userspace. The specification is docs/abi.md; the Rust definition the module
 * compiles is rust/abi.rs. A host test checks that both layouts agree.
 *
 * All fields are little-endian. The page sits at offset 0 of the shared
 * memory region (BAR2 of an ivshmem device) and spans MIGTIME_PAGE_BYTES.
 */
#ifndef MIGTIME_ABI_H
#define MIGTIME_ABI_H

#include <stdint.h>

#define MIGTIME_MAGIC 0x5447494dU /* "MIGT" read as little-endian u32 */
#define MIGTIME_VERSION 1
#define MIGTIME_PAGE_BYTES 4096
#define MIGTIME_GUEST_AREA_OFFSET 256

/* flags */
#define MIGTIME_FLAG_COMPENSATED (1U << 0) /* Tout already applied via the TSC */

/* Written by the host only, at offset 0, under seq_count (odd while writing). */
struct migtime_host_area {
	uint32_t magic;              /* MIGTIME_MAGIC */
	uint16_t version;            /* MIGTIME_VERSION */
	uint16_t size;               /* bytes of the host area filled in: 64..256 */
	uint32_t seq_count;          /* seqlock: odd while the host writes */
	uint32_t flags;              /* MIGTIME_FLAG_* ; other bits zero */
	uint64_t migration_seq;      /* +1 on every migration or restore */
	int64_t tai_delta_ns;        /* Tout of the latest migration; 0 if compensated */
	int64_t tai_delta_total_ns;  /* sum of all uncompensated Touts */
	uint64_t reserved[3];        /* zero */
};

/* Written by the guest only, at MIGTIME_GUEST_AREA_OFFSET, under seq_count. */
struct migtime_guest_area {
	uint32_t seq_count;          /* seqlock: odd while the guest writes */
	uint32_t outcome;            /* MIGTIME_OUTCOME_* */
	uint64_t ack_seq;            /* migration_seq acted on */
	int64_t intended_ns;         /* step intended */
	int64_t applied_ns;          /* step measured as applied */
	int64_t applied_total_ns;    /* tai_delta_total_ns the guest is in step with */
	int64_t ack_realtime_ns;     /* guest CLOCK_REALTIME right after acting */
	uint64_t events;             /* events acted on since the module was loaded */
	uint64_t reserved;
};

/* outcome */
#define MIGTIME_OUTCOME_STEPPED 1
#define MIGTIME_OUTCOME_NOTIFIED 2
#define MIGTIME_OUTCOME_REFUSED_SEQ_BACKWARDS 3
#define MIGTIME_OUTCOME_REFUSED_OVER_LIMIT 4
#define MIGTIME_OUTCOME_REFUSED_INCONSISTENT 5
#define MIGTIME_OUTCOME_FAILED 6

/* One record as read(2) from /dev/migtime returns it (64 bytes). */
struct migtime_event {
	uint64_t event;              /* 1, 2, ... since the module was loaded */
	uint64_t migration_seq;      /* the page's migration_seq acted on */
	uint32_t page_flags;         /* the page's flags then */
	uint32_t outcome;            /* MIGTIME_OUTCOME_* */
	int64_t intended_ns;         /* step intended (pending delta) */
	int64_t applied_ns;          /* change of CLOCK_REALTIME - CLOCK_MONOTONIC */
	int64_t residual_ns;         /* applied_ns - intended_ns */
	int64_t realtime_ns;         /* guest CLOCK_REALTIME at the event */
	int64_t monotonic_ns;        /* guest CLOCK_MONOTONIC at the event */
};

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct migtime_host_area) == 64, "host area is 64 bytes");
_Static_assert(sizeof(struct migtime_guest_area) == 64, "guest area is 64 bytes");
_Static_assert(sizeof(struct migtime_event) == 64, "event is 64 bytes");
#endif

#endif /* MIGTIME_ABI_H */
