/* The Linux guest kind's machinery on a real VM, without Linux: a
 * synthetic bzImage whose 64-bit entry is a few instructions, loaded by
 * vmp_linux_load, run by the vCPU threads. It checks what a stock kernel
 * cannot show on demand: the entry state (long mode, rsi = zero page), a
 * reset through the i8042, console output through the UART, a triple
 * fault's message, a stop by the host, and that APs which never get a
 * SIPI are kicked out of KVM_RUN and joined. Needs /dev/kvm; skipped
 * loudly otherwise. */
#include <criterion/criterion.h>
#include <poll.h>
#include <string.h>

#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/uart.h"
#include "kvm/kvm.h"
#include "linux/boot.h"
#include "linux/vcpus.h"
#include "testing.h"
#include "vmproc.h"

#define SETUP_SECTS 4
#define SETUP_LEN ((SETUP_SECTS + 1) * 512)
#define KERNEL_LEN 4096
#define IMG_LEN (SETUP_LEN + KERNEL_LEN)

static struct vmp_kvm_host host = { .kvm_fd = -1 };

static void setup(void)
{
	struct hatch_err err = { 0 };
	if (vmp_kvm_host_open(&host, "/dev/kvm", &err) < 0)
		t_skip("this test needs /dev/kvm: %s", err.msg);
}

static void teardown(void)
{
	vmp_kvm_host_close(&host);
}

TestSuite(linux_vcpus, .init = setup, .fini = teardown, .timeout = 60);

static void w16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A bzImage whose protected-mode part has `code` at its 64-bit entry. */
static void make_image(uint8_t *b, const uint8_t *code, size_t len)
{
	memset(b, 0, IMG_LEN);
	b[VMP_BZ_SETUP_SECTS] = SETUP_SECTS;
	w32(b + VMP_BZ_SYSSIZE, KERNEL_LEN / 16);
	w16(b + VMP_BZ_BOOT_FLAG, 0xaa55);
	b[VMP_BZ_JUMP] = 0xeb;
	b[VMP_BZ_JUMP + 1] = 0x6a;
	memcpy(b + VMP_BZ_HEADER, "HdrS", 4);
	w16(b + VMP_BZ_VERSION, 0x020f);
	b[VMP_BZ_LOADFLAGS] = VMP_BZ_LOADED_HIGH;
	w32(b + VMP_BZ_INITRD_ADDR_MAX, 0x7fffffff);
	w32(b + VMP_BZ_KERNEL_ALIGNMENT, 0x200000);
	b[VMP_BZ_RELOCATABLE] = 1;
	w16(b + VMP_BZ_XLOADFLAGS, VMP_BZ_XLF_KERNEL_64);
	w32(b + VMP_BZ_CMDLINE_SIZE, 0x7ff);
	w64(b + VMP_BZ_PREF_ADDRESS, 0x1000000);
	w32(b + VMP_BZ_INIT_SIZE, 0x100000);
	memset(b + SETUP_LEN, 0xf4, KERNEL_LEN); /* hlt */
	memcpy(b + SETUP_LEN + 0x200, code, len);
}

struct run {
	enum vmp_vm_end end;
	char msg[HATCH_ERR_MSG_MAX];
	char console[256];
	struct vmp_bus_stats stats;
};

/* Boot `code` on nvcpus vCPUs; wait up to wait_ms for the VM to end, then
 * stop it. */
static void boot(const uint8_t *code, size_t len, unsigned nvcpus, int wait_ms,
		 struct run *out)
{
	static uint8_t img[IMG_LEN];
	static const uint8_t initrd[4096] = { 'x' };
	make_image(img, code, len);
	struct hatch_err err = { 0 };
	struct vmp_vm vm;
	cr_assert_eq(vmp_vm_create(&host, 64 << 20, nvcpus, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_linux_cpu_init(&vm, host.cpuid, &err), 0, "%s", err.msg);
	struct vmp_linux_boot b = { .kernel = img, .kernel_len = IMG_LEN, .initrd = initrd,
				    .initrd_len = sizeof(initrd), .nvirtio = 1 };
	struct vmp_linux_layout l;
	cr_assert_eq(vmp_linux_load(&vm, &b, &l, &err), 0, "%s", err.msg);
	cr_assert_eq(l.entry, 0x100200);
	cr_assert_eq(l.initrd, (64 << 20) - 4096, "initrd at the top of RAM");
	cr_assert_eq(vm.mem[l.initrd], 'x');
	struct vmp_bus *bus;
	struct vmp_uart *uart;
	struct vmp_vcpus *vc;
	cr_assert_eq(vmp_bus_create(&bus, &err), 0);
	cr_assert_eq(vmp_uart_create(bus, vm.vm_fd, VMP_UART_COM1_BASE, VMP_UART_COM1_IRQ,
				     &uart, &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_i8042_attach(bus, &err), 0);
	cr_assert_eq(vmp_vcpus_signal_init(&err), 0, "%s", err.msg);
	cr_assert_eq(vmp_vcpus_create(&vm, bus, &vc, &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_vcpus_end(vc, NULL, 0), VMP_VM_RUNNING);
	vmp_vcpus_start(vc);
	struct pollfd p = { .fd = vmp_vcpus_eventfd(vc), .events = POLLIN };
	poll(&p, 1, wait_ms);
	vmp_vcpus_stop(vc);
	out->end = vmp_vcpus_end(vc, out->msg, sizeof(out->msg));
	vmp_uart_tail(uart, 5, out->console, sizeof(out->console));
	vmp_bus_stats(bus, &out->stats);
	vmp_vcpus_destroy(vc);
	vmp_uart_destroy(uart);
	vmp_bus_destroy(bus);
	vmp_vm_destroy(&vm);
}

/* rsi must hold the zero page: print "ok\n" if it does, "bad\n" if not,
 * then reset through the i8042. An unclaimed port is read on the way. */
Test(linux_vcpus, entry_state_console_and_reset, .timeout = 60)
{
	static const uint8_t code[] = {
		0xe4, 0x99,                         /* in $0x99, %al (unclaimed) */
		0x66, 0xba, 0xf8, 0x03,             /* mov $0x3f8, %dx */
		0x48, 0x81, 0xfe, 0x00, 0x70, 0x00, 0x00, /* cmp $0x7000, %rsi */
		0x75, 0x0c,                         /* jne bad */
		0xb0, 'o', 0xee,                    /* out 'o' */
		0xb0, 'k', 0xee,                    /* out 'k' */
		0xb0, '\n', 0xee,
		0xb0, 0xfe, 0xe6, 0x64,             /* out 0xfe, $0x64: reset */
		0xf4,
		/* bad: */
		0xb0, 'b', 0xee, 0xb0, 'a', 0xee, 0xb0, 'd', 0xee,
		0xb0, 0xfe, 0xe6, 0x64, 0xf4,
	};
	struct run r;
	boot(code, sizeof(code), 2, 20000, &r);
	cr_assert_eq(r.end, VMP_VM_RESET, "%s: %s", vmp_vm_end_name(r.end), r.msg);
	cr_assert_str_eq(r.msg, "the guest reset itself (reboot / panic=1)");
	cr_assert_str_eq(r.console, "ok\n");
	cr_assert_eq(r.stats.unknown_reads, 1);
	cr_assert_eq(r.stats.last_unknown_addr, 0x99);
}

/* ud2 with no IDT: #UD, then #DF, then a triple fault. */
Test(linux_vcpus, triple_fault, .timeout = 60)
{
	static const uint8_t code[] = { 0x0f, 0x0b };
	struct run r;
	boot(code, sizeof(code), 1, 20000, &r);
	cr_assert_eq(r.end, VMP_VM_TRIPLE_FAULT, "%s: %s", vmp_vm_end_name(r.end), r.msg);
	/* The faulting rip where KVM keeps it (Intel, kvm-pvm); on AMD, KVM
	 * resets the vCPU on a shutdown and the message says so. */
	cr_assert(strstr(r.msg, "triple-faulted on vCPU 0 at rip 0x100200") ||
			  strstr(r.msg, "triple-faulted on vCPU 0 (rip unknown: KVM reset"),
		  "%s", r.msg);
}

/* A guest spinning without exits, and 3 APs waiting for a SIPI that never
 * comes: the host's stop must bring all four threads home. */
Test(linux_vcpus, stop_kicks_every_thread, .timeout = 60)
{
	static const uint8_t code[] = { 0xeb, 0xfe }; /* jmp . */
	struct run r;
	boot(code, sizeof(code), 4, 300, &r);
	cr_assert_eq(r.end, VMP_VM_STOPPED, "%s: %s", vmp_vm_end_name(r.end), r.msg);
	cr_assert_str_eq(r.msg, "stopped by the host");
}
