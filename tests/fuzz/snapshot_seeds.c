/* snapshot_seeds.c - write a seed corpus for fuzz_snapshot: small valid
 * snapshots (1 and 2 vCPUs, with and without xsave/xcrs, with empty,
 * one-page and scattered memory; kernel-less ones with a runtime section,
 * a Linux guest's with a devices section of two virtio devices) into the
 * directory argv[1]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"

static int put(const char *dir, int n, const struct snap_state *s)
{
	uint8_t *b;
	size_t len;
	struct hatch_err err;
	if (snap_encode(s, &b, &len, &err) < 0) {
		fprintf(stderr, "seed %d: %s\n", n, err.msg);
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/seed-%d", dir, n);
	FILE *f = fopen(path, "wbe");
	if (!f || fwrite(b, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		free(b);
		return -1;
	}
	free(b);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	static uint8_t mem[16 * 4096], xsave[4096], runtime[40];
	static struct snap_vcpu vcpu[2];
	static struct kvm_msr_entry msrs[2] = { { .index = 0x10, .data = 1 },
						{ .index = 0x174, .data = 8 } };
	memset(xsave, 0x5a, sizeof(xsave));
	memset(runtime, 0x33, sizeof(runtime));
	for (int i = 0; i < 2; i++) {
		vcpu[i].regs.rip = 0x1000 + (unsigned)i;
		vcpu[i].sregs.cr0 = 0x80000011;
		vcpu[i].msrs = msrs;
		vcpu[i].nmsrs = 2;
		vcpu[i].tsc.tsc_khz = 2000000;
	}
	struct snap_state s = { .cpu = { .vendor = "GenuineIntel", .signature = 0x806f8,
					 .cpuid_hash = 42 },
				.mem_size = sizeof(mem), .mem = mem, .nvcpus = 1, .vcpu = vcpu,
				.runtime = runtime, .runtime_len = sizeof(runtime) };
	s.vm.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s.vm.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	int n = 0;
	if (put(argv[1], n++, &s) < 0) /* no memory at all */
		return 1;
	mem[0] = 1;
	vcpu[0].xsave = xsave;
	vcpu[0].xsave_len = sizeof(xsave);
	vcpu[0].has_xcrs = true;
	if (put(argv[1], n++, &s) < 0) /* one page */
		return 1;
	mem[5 * 4096 + 7] = 2;
	mem[6 * 4096] = 3;
	mem[15 * 4096 + 4095] = 4;
	s.nvcpus = 2;
	if (put(argv[1], n++, &s) < 0) /* scattered, 2 vCPUs */
		return 1;
	/* A Linux guest: a console (2 queues, both live) and a second device
	 * with one queue set up but not enabled; rings in pages 1-3. */
	static struct snap_devices dev = {
		.machine = SNAP_MACHINE_LINUX,
		.uart = { .ier = 1, .lcr = 3, .mcr = 8, .fcr = 0xc1, .dll = 1, .thr_pending = true },
		.agent = { .bytes_in = 100, .bytes_out = 2000 },
		.nvirtio = 2,
		.virtio = {
			{ .device_id = 3, .nqueues = 2, .status = 0x0f, .interrupt_status = 1,
			  .config_generation = 1, .queue_sel = 1,
			  .device_features = 1ull << 32, .driver_features = 1ull << 32,
			  .q = { { .desc_gpa = 0x1000, .avail_gpa = 0x1400, .used_gpa = 0x1800,
				   .num = 64, .last_avail = 5, .used_idx = 5, .ready = true,
				   .enabled = true },
				 { .desc_gpa = 0x2000, .avail_gpa = 0x2400, .used_gpa = 0x2800,
				   .num = 64, .last_avail = 2, .used_idx = 1, .ready = true,
				   .enabled = true } } },
			{ .device_id = 2, .nqueues = 1, .status = 0x03,
			  .device_features = 3ull << 32,
			  .q = { { .desc_gpa = 0x3000, .avail_gpa = 0x3400, .used_gpa = 0x3800,
				   .num = 128 } } },
		},
	};
	s.runtime = NULL;
	s.runtime_len = 0;
	s.devices = &dev;
	if (put(argv[1], n++, &s) < 0) /* a Linux guest's */
		return 1;
	return 0;
}
