// SPDX-License-Identifier: GPL-2.0
/*
 * mt-exit N: end the guest by writing N to QEMU's isa-debug-exit device
 * (iobase 0xf4), so QEMU exits with status (N << 1) | 1. Used by /init.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char **argv)
{
	unsigned long n;
	char *end;

	if (argc != 2) {
		fprintf(stderr, "usage: mt-exit N\n");
		return 2;
	}
	n = strtoul(argv[1], &end, 0);
	if (*end || n > 0x7f) {
		fprintf(stderr, "mt-exit: bad status '%s'\n", argv[1]);
		return 2;
	}
	if (ioperm(0xf4, 4, 1)) {
		perror("mt-exit: ioperm");
		return 1;
	}
	outl((unsigned int)n, 0xf4);
	/* Only reached without an isa-debug-exit device. */
	fprintf(stderr, "mt-exit: no isa-debug-exit device at 0xf4\n");
	return 1;
}
