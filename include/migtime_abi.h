/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * migtime paravirtual clock page, ABI version 1 -- C view for VMM authors.
 *
 * Specification: docs/abi.md. The Rust definitions (rust/abi.rs for the page,
 * rust/event.rs for the /dev/migtime record) are the source of truth; a host
 * test compiles this header and checks every offset and size against them.
 *
 * The page is at offset 0 of the shared memory region (BAR2 of an ivshmem
 * device), little-endian. The host writes struct migtime_host_area with the
 * seqlock protocol (seq_count odd while writing); the guest writes
 * struct migtime_guest_area at MIGTIME_GUEST_AREA_OFFSET with its own seqlock.
 */
#ifndef MIGTIME_ABI_H
#define MIGTIME_ABI_H

#include <stdint.h>

#define MIGTIME_MAGIC			0x5447494dU	/* "MIGT" little-endian */
#define MIGTIME_VERSION			1
#define MIGTIME_PAGE_BYTES		4096
#define MIGTIME_GUEST_AREA_OFFSET	256
#define MIGTIME_HOST_AREA_V1_SIZE	64

/* flags */
#define MIGTIME_FLAG_COMPENSATED	(1U << 0)
#define MIGTIME_FLAG_RESTORE		(1U << 1)
#define MIGTIME_FLAGS_KNOWN		(MIGTIME_FLAG_COMPENSATED | MIGTIME_FLAG_RESTORE)

/* outcome (guest area, event record) */
#define MIGTIME_OUTCOME_STEPPED			1
#define MIGTIME_OUTCOME_NOTIFIED		2
#define MIGTIME_OUTCOME_REFUSED_SEQ_BACKWARDS	3
#define MIGTIME_OUTCOME_REFUSED_OVER_LIMIT	4
#define MIGTIME_OUTCOME_REFUSED_INCONSISTENT	5
#define MIGTIME_OUTCOME_FAILED			6
#define MIGTIME_OUTCOME_REFUSED_RATE		7
#define MIGTIME_OUTCOME_PARTIAL			8

/* Host-written, offset 0. */
struct migtime_host_area {
	uint32_t magic;			/* MIGTIME_MAGIC */
	uint16_t version;		/* MIGTIME_VERSION */
	uint16_t size;			/* 64..=256: bytes of host area filled in */
	uint32_t seq_count;		/* seqlock: odd while the host writes */
	uint32_t flags;			/* MIGTIME_FLAG_* */
	uint64_t migration_seq;		/* +1 per migration/restore */
	int64_t tai_delta_ns;		/* Tout of the latest migration, 0 if compensated */
	int64_t tai_delta_total_ns;	/* sum of all uncompensated Touts */
	uint64_t reserved[3];		/* zero */
};

/* step_method (struct migtime_timing) */
#define MIGTIME_STEP_INJECT		1	/* timekeeping_inject_realtime_offset(): exact */
#define MIGTIME_STEP_SETTIMEOFDAY	2	/* read, then do_settimeofday64() */

/* wake_source (struct migtime_timing) */
#define MIGTIME_WAKE_DOORBELL		1
#define MIGTIME_WAKE_POLL		2

/*
 * Where the guest's time went for one event (guest CLOCK_MONOTONIC, ns; 0: did
 * not happen). Extends the guest area and the event record; 64 bytes.
 */
struct migtime_timing {
	int64_t wake_mono_ns;		/* doorbell interrupt, or start of the poll that saw it */
	int64_t work_mono_ns;		/* start of the work that read and decided */
	int64_t done_mono_ns;		/* clock stepped (or decision made) */
	uint32_t wake_source;		/* MIGTIME_WAKE_* */
	uint32_t step_method;		/* MIGTIME_STEP_*, 0 if no step was attempted */
	uint32_t sets;			/* clock updates the step took */
	uint32_t reserved0;
	uint64_t reserved[3];
};

/*
 * Guest-written, at MIGTIME_GUEST_AREA_OFFSET. The first
 * MIGTIME_GUEST_AREA_V1_SIZE bytes are the area as ABI v1 first defined it;
 * read `timing` only when size >= MIGTIME_GUEST_AREA_SIZE (a guest that
 * predates it leaves size 0).
 */
struct migtime_guest_area {
	uint32_t seq_count;		/* seqlock: odd while the guest writes */
	uint32_t outcome;		/* MIGTIME_OUTCOME_* */
	uint64_t ack_seq;		/* migration_seq acted on */
	int64_t intended_ns;		/* step intended */
	int64_t applied_ns;		/* step measured (realtime-monotonic offset change) */
	int64_t applied_total_ns;	/* host total the guest is now in step with */
	int64_t ack_realtime_ns;	/* guest CLOCK_REALTIME after acting */
	uint64_t events;		/* events acted on since module load */
	uint32_t size;			/* bytes filled in: MIGTIME_GUEST_AREA_SIZE, or 0 (v1 guest) */
	uint32_t reserved;
	struct migtime_timing timing;
};

#define MIGTIME_GUEST_AREA_V1_SIZE	64
#define MIGTIME_GUEST_AREA_SIZE		128

/*
 * /dev/migtime read(2) record, little-endian. read() returns
 * MIGTIME_EVENT_BYTES when the buffer has room, else the
 * MIGTIME_EVENT_V1_BYTES prefix (which never changes).
 */
struct migtime_event {
	uint64_t event;			/* 1, 2, ... since module load */
	uint64_t migration_seq;
	uint32_t page_flags;
	uint32_t outcome;		/* MIGTIME_OUTCOME_* */
	int64_t intended_ns;
	int64_t applied_ns;
	int64_t residual_ns;		/* applied - intended */
	int64_t realtime_ns;		/* guest CLOCK_REALTIME at the event */
	int64_t monotonic_ns;		/* guest CLOCK_MONOTONIC at the event */
	struct migtime_timing timing;	/* not in the 64-byte v1 prefix */
};

#define MIGTIME_EVENT_V1_BYTES		64
#define MIGTIME_EVENT_BYTES		128

#ifdef __STDC_VERSION__
#if __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct migtime_host_area) == MIGTIME_HOST_AREA_V1_SIZE, "host area");
_Static_assert(sizeof(struct migtime_guest_area) == MIGTIME_GUEST_AREA_SIZE, "guest area");
_Static_assert(sizeof(struct migtime_timing) == 64, "timing");
_Static_assert(sizeof(struct migtime_event) == MIGTIME_EVENT_BYTES, "event");
#endif
#endif

#endif /* MIGTIME_ABI_H */
