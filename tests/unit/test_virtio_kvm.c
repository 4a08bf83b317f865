/* test_virtio_kvm.c - the KVM binding of a virtio-mmio device
 * (vmproc/devices/virtio_mmio_kvm.c) against a real KVM: a few bytes of
 * real-mode guest code write QueueNotify, and the write must land on the
 * queue's ioeventfd inside KVM when its value is the queue's index, and
 * reach the vCPU loop as an MMIO exit when it is not (datamatch). The
 * irqfd is checked for registration and a raise. Needs /dev/kvm; skipped
 * loudly otherwise.
 *
 * No struct vmp_kvm_host: the test builds the smallest VM KVM allows (one
 * memory slot, the in-kernel irqchip that irqfd needs, one vCPU in real
 * mode), with raw ioctls.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <linux/kvm.h>

#include "devices/virtio_mmio_kvm.h"
#include "testing.h"

#define MEM_SIZE 0x10000
#define CODE 0x1000
#define BASE 0xD0000000ull
#define OUT_PORT 0x10

static int kvm = -1, vm = -1, vcpu = -1;
static uint8_t *mem;
static struct kvm_run *run;
static size_t run_size;

static void setup(void)
{
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		t_skip("no usable /dev/kvm: %s", strerror(errno));
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	cr_assert_geq(vm, 0, "KVM_CREATE_VM: %s", strerror(errno));
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)mem,
	};
	cr_assert_eq(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r), 0, "%s", strerror(errno));
	cr_assert_eq(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0, "KVM_CREATE_IRQCHIP: %s",
		     strerror(errno));
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	cr_assert_geq(vcpu, 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	run_size = (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	cr_assert_neq(run, MAP_FAILED);
}

static void teardown(void)
{
	if (run && run != MAP_FAILED)
		munmap(run, run_size);
	if (vcpu >= 0)
		close(vcpu);
	if (vm >= 0)
		close(vm);
	if (mem && mem != MAP_FAILED)
		munmap(mem, MEM_SIZE);
	if (kvm >= 0)
		close(kvm);
	kvm = vm = vcpu = -1;
	mem = NULL;
	run = NULL;
}

TestSuite(virtio_kvm, .init = setup, .fini = teardown, .timeout = 20);

/* Real mode, DS based at the device (KVM takes any segment base): write
 * `value` to DS:0x50 (QueueNotify) as a dword, then OUT to OUT_PORT so the
 * test gets control back (HLT would sleep in the in-kernel irqchip). */
static void run_notify(uint32_t value)
{
	uint8_t code[] = {
		0x66, 0xb8, 0, 0, 0, 0,  /* mov eax, value */
		0x66, 0xa3, 0x50, 0x00,  /* mov [0x50], eax */
		0xe6, OUT_PORT,          /* out OUT_PORT, al */
		0xf4,                    /* hlt (not reached) */
	};
	memcpy(code + 2, &value, 4);
	memcpy(mem + CODE, code, sizeof(code));
	struct kvm_sregs s;
	cr_assert_eq(ioctl(vcpu, KVM_GET_SREGS, &s), 0);
	s.cs.base = 0;
	s.cs.selector = 0;
	s.ds.base = BASE;
	s.ds.selector = 0;
	cr_assert_eq(ioctl(vcpu, KVM_SET_SREGS, &s), 0);
	struct kvm_regs r = { .rip = CODE, .rflags = 2 };
	cr_assert_eq(ioctl(vcpu, KVM_SET_REGS, &r), 0);
}

static int enter(void)
{
	cr_assert_eq(ioctl(vcpu, KVM_RUN, 0), 0, "KVM_RUN: %s", strerror(errno));
	return (int)run->exit_reason;
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

Test(virtio_kvm, notify_lands_on_the_queues_ioeventfd)
{
	struct vmp_virtio_kvm b;
	struct hatch_err err;
	cr_assert_eq(vmp_virtio_kvm_bind(&b, vm, BASE, 5, 2, &err), 0, "%s", err.msg);

	run_notify(1);
	cr_assert_eq(enter(), KVM_EXIT_IO, "exit %u", run->exit_reason);
	cr_expect_eq(run->io.port, OUT_PORT);
	cr_expect(readable(b.notify_fd[1]), "queue 1's ioeventfd did not fire");
	cr_expect_not(readable(b.notify_fd[0]));
	vmp_virtio_kvm_drain(&b, 1);
	cr_expect_not(readable(b.notify_fd[1]), "drain left the counter set");

	/* No queue 7: KVM passes the write to userspace, where the bus would
	 * give it to vmp_virtio_mmio_write (which ignores it). */
	run_notify(7);
	cr_assert_eq(enter(), KVM_EXIT_MMIO, "exit %u", run->exit_reason);
	cr_expect_eq(run->mmio.phys_addr, BASE + 0x50);
	cr_expect_eq(run->mmio.len, 4);
	cr_expect(run->mmio.is_write);

	/* The irqfd takes a raise (it was registered: bind succeeded). */
	vmp_virtio_kvm_raise_irq(&b);

	vmp_virtio_kvm_unbind(&b);
	cr_expect_eq(b.irq_fd, -1);
	cr_expect_eq(b.notify_fd[0], -1);
	vmp_virtio_kvm_unbind(&b); /* idempotent */

	/* Deassigned: the same write is an MMIO exit now. */
	run_notify(1);
	cr_expect_eq(enter(), KVM_EXIT_MMIO, "exit %u", run->exit_reason);
}

Test(virtio_kvm, bind_fails_cleanly)
{
	struct vmp_virtio_kvm b, c;
	struct hatch_err err;
	cr_assert_eq(vmp_virtio_kvm_bind(&b, vm, BASE, 5, 2, &err), 0, "%s", err.msg);
	/* The same address and datamatch twice: KVM refuses (EEXIST), and
	 * the second binding undoes what it had done. */
	cr_expect_eq(vmp_virtio_kvm_bind(&c, vm, BASE, 6, 1, &err), -1);
	cr_expect(strstr(err.msg, "KVM_IOEVENTFD"), "%s", err.msg);
	cr_expect_eq(c.irq_fd, -1);
	cr_expect_eq(c.notify_fd[0], -1);
	cr_expect_eq(vmp_virtio_kvm_bind(&c, vm, BASE, 6, 0, &err), -1); /* no queues */
	vmp_virtio_kvm_unbind(&b);
}
