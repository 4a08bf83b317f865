/* vmsnap.c - Save and Restore of one VM. See vmsnap.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "vmsnap.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define EFER_LMA (1ull << 10)

/* One vCPU's MSRs: the index list plus its values, in one allocation. */
struct msrs_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[SNAP_MAX_MSRS];
};

/* Per-vCPU buffers that the borrowed pointers of struct snap_vcpu point
 * into. Static: vmproc is single-threaded, and these are ~20 KiB each. */
static struct kvm_xsave xsave_buf[VMP_MAX_VCPUS];
static struct msrs_buf msrs_buf[VMP_MAX_VCPUS];
static struct snap_vcpu vcpu_buf[VMP_MAX_VCPUS];

#define VCPU_IOCTL(fd, req, arg, name, i)                                        \
	do {                                                                     \
		if (ioctl((fd), (req), (arg)) < 0)                               \
			return hatch_err_set(err, E(VM_ERROR), errno, "%s vCPU %u", \
					     (name), (i));                       \
	} while (0)

static int get_vcpu(struct vmp_vm *vm, const struct vmp_kvm_host *h, unsigned i,
		    struct snap_vcpu *v, struct hatch_err *err)
{
	int fd = vm->vcpu_fd[i];
	memset(v, 0, sizeof(*v));
	/* A vCPU stopped at an I/O exit (every hypercall is one) has not
	 * finished the instruction: KVM completes it on the next KVM_RUN.
	 * Enter once with immediate_exit, which completes it and runs
	 * nothing, so the state read below is consistent (KVM API docs,
	 * KVM_EXIT_IO). */
	if (vmp_vcpu_run_immediate_exit(vm, i, "complete pending I/O", err) < 0)
		return -1;
	VCPU_IOCTL(fd, KVM_GET_REGS, &v->regs, "KVM_GET_REGS", i);
	VCPU_IOCTL(fd, KVM_GET_SREGS, &v->sregs, "KVM_GET_SREGS", i);
	VCPU_IOCTL(fd, KVM_GET_FPU, &v->fpu, "KVM_GET_FPU", i);
	/* KVM_GET_XSAVE's 4096 bytes: KVM_CAP_XSAVE2 says 4096 on this host
	 * (docs/snapshot.md); a host with AMX would need KVM_GET_XSAVE2. */
	VCPU_IOCTL(fd, KVM_GET_XSAVE, &xsave_buf[i], "KVM_GET_XSAVE", i);
	v->xsave = &xsave_buf[i];
	v->xsave_len = sizeof(xsave_buf[i]);
	VCPU_IOCTL(fd, KVM_GET_XCRS, &v->xcrs, "KVM_GET_XCRS", i);
	v->has_xcrs = true;
	struct msrs_buf *m = &msrs_buf[i];
	uint32_t n = h->msr_list->nmsrs < SNAP_MAX_MSRS ? h->msr_list->nmsrs : SNAP_MAX_MSRS;
	memset(m, 0, sizeof(m->hdr) + n * sizeof(m->e[0]));
	m->hdr.nmsrs = n;
	for (uint32_t k = 0; k < n; k++)
		m->e[k].index = h->msr_list->indices[k];
	int r = ioctl(fd, KVM_GET_MSRS, &m->hdr);
	if (r < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_MSRS vCPU %u", i);
	/* KVM stops at the first MSR it cannot read: keep what it read. */
	v->msrs = m->e;
	v->nmsrs = (uint32_t)r;
	VCPU_IOCTL(fd, KVM_GET_LAPIC, &v->lapic, "KVM_GET_LAPIC", i);
	VCPU_IOCTL(fd, KVM_GET_MP_STATE, &v->mp, "KVM_GET_MP_STATE", i);
	VCPU_IOCTL(fd, KVM_GET_VCPU_EVENTS, &v->events, "KVM_GET_VCPU_EVENTS", i);
	VCPU_IOCTL(fd, KVM_GET_DEBUGREGS, &v->debugregs, "KVM_GET_DEBUGREGS", i);
	r = ioctl(fd, KVM_GET_TSC_KHZ, 0);
	if (r <= 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_TSC_KHZ vCPU %u", i);
	v->tsc.tsc_khz = (uint64_t)r;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} tsc = { .hdr.nmsrs = 1, .e.index = MSR_IA32_TSC };
	if (ioctl(fd, KVM_GET_MSRS, &tsc) != 1)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_MSRS (TSC) vCPU %u", i);
	v->tsc.tsc = tsc.e.data;
	return 0;
}

/* kvm-clock as the guest last computed it on vCPU i: the pvclock record
 * KVM keeps in guest memory (MSR_KVM_SYSTEM_TIME_NEW says where) applied
 * to the vCPU's saved TSC, as the guest's own pvclock_clocksource_read
 * does. 0 if the guest has no kvm-clock there. */
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
struct pvclock_rec {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags, pad[2];
};

static uint64_t guest_kvmclock_ns(const struct vmp_vm *vm, const struct snap_vcpu *v)
{
	uint64_t msr = 0;
	for (uint32_t k = 0; k < v->nmsrs; k++)
		if (v->msrs[k].index == MSR_KVM_SYSTEM_TIME_NEW)
			msr = v->msrs[k].data;
	uint64_t gpa = msr & ~1ull;
	if (!(msr & 1) || gpa + sizeof(struct pvclock_rec) > vm->mem_size ||
	    gpa + sizeof(struct pvclock_rec) > 3ull << 30)
		return 0;
	struct pvclock_rec r;
	memcpy(&r, vm->mem + snap_gpa_to_ram_offset(gpa), sizeof(r));
	if ((r.version & 1) || v->tsc.tsc < r.tsc_timestamp)
		return 0;
	uint64_t delta = v->tsc.tsc - r.tsc_timestamp;
	if (r.tsc_shift < 0)
		delta >>= -r.tsc_shift;
	else
		delta <<= r.tsc_shift;
	return r.system_time + (uint64_t)(((unsigned __int128)delta * r.tsc_to_system_mul) >> 32);
}

static int get_irqchip(int vm_fd, uint32_t chip, struct kvm_irqchip *c,
		       struct hatch_err *err)
{
	memset(c, 0, sizeof(*c));
	c->chip_id = chip;
	if (ioctl(vm_fd, KVM_GET_IRQCHIP, c) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_IRQCHIP %u", chip);
	return 0;
}

int vmp_snap_save(struct vmp_vm *vm, const struct vmp_kvm_host *h,
		  const struct vmp_guest *g, const struct snap_devices *dev, int fd,
		  struct vmp_snap_save_stats *st, struct hatch_err *err)
{
	memset(st, 0, sizeof(*st));
	struct snap_state s = { 0 };
	uint64_t t0 = hatch_now_ns();
	vmp_snap_host_cpu(h, &s.cpu);
	s.mem_size = vm->mem_size;
	s.mem = vm->mem;
	s.nvcpus = vm->nvcpus;
	s.vcpu = vcpu_buf;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (get_vcpu(vm, h, i, &vcpu_buf[i], err) < 0)
			return -1;
	uint64_t t1 = hatch_now_ns();
	if (get_irqchip(vm->vm_fd, KVM_IRQCHIP_PIC_MASTER, &s.vm.pic_master, err) < 0 ||
	    get_irqchip(vm->vm_fd, KVM_IRQCHIP_PIC_SLAVE, &s.vm.pic_slave, err) < 0 ||
	    get_irqchip(vm->vm_fd, KVM_IRQCHIP_IOAPIC, &s.vm.ioapic, err) < 0)
		return -1;
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &s.vm.pit) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_PIT2");
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &s.vm.clock) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_CLOCK");
	/* Without a stable TSC (nested virtualisation, an emulator) the
	 * guest's kvm-clock, computed from its TSC, can run ahead of KVM's
	 * own: restored to KVM's value, a Linux guest would see its clock
	 * stand still until KVM caught up (pvclock never goes back), seconds
	 * after a minute of uptime. Save the later of the two, as QEMU does
	 * when KVM's clock is not reliable. */
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		uint64_t seen = guest_kvmclock_ns(vm, &vcpu_buf[i]);
		if (seen > s.vm.clock.clock)
			s.vm.clock.clock = seen;
	}
	static uint8_t rt[VMP_GUEST_RT_MAX];
	if (g) {
		s.runtime = rt;
		s.runtime_len = (uint32_t)vmp_guest_runtime_save(g, rt);
	}
	s.devices = dev;
	uint64_t t2 = hatch_now_ns();
	if (snap_write_fd(fd, &s, err) < 0)
		return -1;
	uint64_t t3 = hatch_now_ns();
	off_t size = lseek(fd, 0, SEEK_END);
	st->vcpu_ns = t1 - t0;
	st->vm_ns = t2 - t1;
	st->write_ns = t3 - t2;
	st->bytes = size > 0 ? (uint64_t)size : 0;
	return 0;
}

/* ---- restore ------------------------------------------------------------ */

static int set_vcpu(struct vmp_vm *vm, unsigned i, const struct snap_vcpu *v,
		    struct hatch_err *err)
{
	int fd = vm->vcpu_fd[i];
	/* QEMU's order (kvm_arch_put_registers): registers, extended state,
	 * sregs, MSRs (with the TSC), then mp_state and the LAPIC (whose base
	 * is in sregs), then events and debug registers. */
	VCPU_IOCTL(fd, KVM_SET_REGS, &v->regs, "KVM_SET_REGS", i);
	if (v->xsave) {
		if (v->xsave_len != sizeof(struct kvm_xsave))
			return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
					     "vCPU %u: xsave area of %u bytes, this host uses %zu",
					     i, v->xsave_len, sizeof(struct kvm_xsave));
		VCPU_IOCTL(fd, KVM_SET_XSAVE, v->xsave, "KVM_SET_XSAVE", i);
	} else {
		VCPU_IOCTL(fd, KVM_SET_FPU, &v->fpu, "KVM_SET_FPU", i);
	}
	if (v->has_xcrs)
		VCPU_IOCTL(fd, KVM_SET_XCRS, &v->xcrs, "KVM_SET_XCRS", i);
	/* TR's type as this host wants it, not as saved: a snapshot restores
	 * only on the vendor that took it (snap's CPU check), so one taken
	 * now already has this host's type, but one taken before TR's type
	 * depended on the vendor has 11, with which QEMU's emulator refuses
	 * the guest its hypercall port (vmp_kvm_tr_type). Only a 64-bit TSS
	 * in long mode, the state the guest runtime sets, is touched. */
	struct kvm_sregs sr = v->sregs;
	if ((sr.efer & EFER_LMA) && (sr.tr.type == 9 || sr.tr.type == 11))
		sr.tr.type = vm->tr_type;
	VCPU_IOCTL(fd, KVM_SET_SREGS, &sr, "KVM_SET_SREGS", i);
	if (v->tsc.tsc_khz) {
		int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
		if (khz > 0 && (uint64_t)khz != v->tsc.tsc_khz &&
		    ioctl(fd, KVM_SET_TSC_KHZ, (unsigned long)v->tsc.tsc_khz) < 0)
			return hatch_err_set(err, E(FAILED_PRECONDITION), errno,
					     "vCPU %u: TSC at %llu kHz, this host runs %d kHz and cannot scale",
					     i, (unsigned long long)v->tsc.tsc_khz, khz);
	}
	struct msrs_buf *m = &msrs_buf[i];
	m->hdr.nmsrs = v->nmsrs;
	memcpy(m->e, v->msrs, v->nmsrs * sizeof(m->e[0]));
	int r = ioctl(fd, KVM_SET_MSRS, &m->hdr);
	if (r < 0 || (uint32_t)r != v->nmsrs)
		return hatch_err_set(err, E(VM_ERROR), r < 0 ? errno : 0,
				     "KVM_SET_MSRS vCPU %u: %d of %u set%s%x", i, r, v->nmsrs,
				     r >= 0 && (uint32_t)r < v->nmsrs ? ", first refused: MSR 0x" : "",
				     r >= 0 && (uint32_t)r < v->nmsrs ? v->msrs[r].index : 0);
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} tsc = { .hdr.nmsrs = 1, .e = { .index = MSR_IA32_TSC, .data = v->tsc.tsc } };
	if (ioctl(fd, KVM_SET_MSRS, &tsc) != 1)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_MSRS (TSC) vCPU %u", i);
	VCPU_IOCTL(fd, KVM_SET_MP_STATE, &v->mp, "KVM_SET_MP_STATE", i);
	VCPU_IOCTL(fd, KVM_SET_LAPIC, &v->lapic, "KVM_SET_LAPIC", i);
	/* KVM ignores a TSC deadline written while the LAPIC timer is not in
	 * TSC-deadline mode, which a fresh vCPU's is not: the MSRS above lost
	 * it. Again now that the LAPIC says the mode, or a Linux guest's
	 * next timer interrupt never comes. */
	for (uint32_t k = 0; k < v->nmsrs; k++) {
		if (v->msrs[k].index != MSR_IA32_TSC_DEADLINE || !v->msrs[k].data)
			continue;
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e;
		} dl = { .hdr.nmsrs = 1, .e = v->msrs[k] };
		if (ioctl(fd, KVM_SET_MSRS, &dl) != 1)
			return hatch_err_set(err, E(VM_ERROR), errno,
					     "KVM_SET_MSRS (TSC deadline) vCPU %u", i);
	}
	VCPU_IOCTL(fd, KVM_SET_VCPU_EVENTS, &v->events, "KVM_SET_VCPU_EVENTS", i);
	VCPU_IOCTL(fd, KVM_SET_DEBUGREGS, &v->debugregs, "KVM_SET_DEBUGREGS", i);
	return 0;
}

/* Guest RAM's host address for a GPA (the layout of vmp_vm_create). */
static uint8_t *hva(struct vmp_vm *vm, uint64_t gpa)
{
	return vm->mem + snap_gpa_to_ram_offset(gpa);
}

int vmp_snap_open(struct vmp_vm *vm, const struct vmp_kvm_host *h, int fd,
		  struct snap_image *img, struct hatch_err *err)
{
	/* Restoring maps the snapshot's pages MAP_PRIVATE over guest RAM: a
	 * vhost-user backend sharing the memfd would not see them. Restore
	 * pools with disks are not built (docs/architecture.md, "Memory
	 * model for vhost-user: decided", point 3, is still to do). */
	if (vm->mem_fd >= 0)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "a VM whose memory is shared with a vhost-user backend "
				     "takes no snapshot restore");
	/* snapshot/ maps and checks the header and sections (never the
	 * memory data, mapped per extent by vmp_snap_apply). */
	struct snap_expect want = { .mem_size = vm->mem_size, .nvcpus = vm->nvcpus };
	vmp_snap_host_cpu(h, &want.cpu);
	return snap_parse_fd(fd, &want, img, err);
}

int vmp_snap_apply(struct vmp_vm *vm, int fd, const struct snap_image *img,
		   struct vmp_snap_restore_stats *st, bool *touched, struct hatch_err *err)
{
	memset(st, 0, sizeof(*st));
	uint64_t t0 = hatch_now_ns();
	/* From here on the VM is changed. */
	*touched = true;
	for (uint32_t i = 0; i < img->nextents; i++) {
		const struct snap_extent *x = &img->ext[i];
		/* Over the registered RAM, same host address: the memslot stays
		 * and KVM's MMU notifier drops the old pages (docs/snapshot.md,
		 * "Measured"). Private: the guest's writes never reach the file. */
		void *m = mmap(hva(vm, x->gpa), x->len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, (off_t)x->file_offset);
		if (m == MAP_FAILED)
			return hatch_err_set(err, E(VM_ERROR), errno,
					     "Restore: mmap memory extent %u", i);
	}
	uint64_t t1 = hatch_now_ns();
	struct kvm_irqchip chips[3] = { img->st.vm.pic_master, img->st.vm.pic_slave,
					img->st.vm.ioapic };
	static const uint32_t ids[3] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					 KVM_IRQCHIP_IOAPIC };
	struct kvm_clock_data clock = img->st.vm.clock;
	/* The guest's clock goes on from where it was saved: it never runs
	 * backwards, and a Linux guest's wall clock is set by its agent on
	 * resume (docs/snapshot.md, "Clock"). Only the value is restored. */
	clock.flags = 0;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_CLOCK");
	for (int k = 0; k < 3; k++) {
		if (chips[k].chip_id != ids[k])
			return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
					     "irqchip section %d has chip_id %u", k, chips[k].chip_id);
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[k]) < 0)
			return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_IRQCHIP %u", ids[k]);
	}
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &img->st.vm.pit) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_PIT2");
	uint64_t t2 = hatch_now_ns();
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (set_vcpu(vm, i, &img->st.vcpu[i], err) < 0)
			return -1;
	uint64_t t3 = hatch_now_ns();
	st->map_ns = t1 - t0;
	st->vm_ns = t2 - t1;
	st->vcpu_ns = t3 - t2;
	return 0;
}

int vmp_snap_restore(struct vmp_vm *vm, const struct vmp_kvm_host *h, int fd,
		     struct vmp_guest *g, struct vmp_snap_restore_stats *st,
		     bool *touched, struct hatch_err *err)
{
	memset(st, 0, sizeof(*st));
	*touched = false;
	uint64_t t0 = hatch_now_ns();
	struct snap_image img;
	if (vmp_snap_open(vm, h, fd, &img, err) < 0)
		return -1;
	if (snap_is_linux(&img.st)) {
		/* Refused before the VM is touched: it stays usable. */
		snap_image_free(&img);
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "Restore: the snapshot is of a Linux guest (devices, no runtime section); this VM runs a kernel-less guest");
	}
	int ret = -1;
	if (vmp_snap_apply(vm, fd, &img, st, touched, err) < 0 ||
	    vmp_guest_runtime_restore(vm, img.st.runtime, img.st.runtime_len, g, err) < 0)
		goto out;
	st->map_ns = hatch_now_ns() - t0 - st->vm_ns - st->vcpu_ns;
	ret = 0;
out:
	if (ret < 0)
		g->ready = false;
	snap_image_free(&img);
	return ret;
}

int vmp_snap_drop_ram(struct vmp_vm *vm, struct hatch_err *err)
{
	if (vm->mem_fd >= 0)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "reset: guest memory is shared with a vhost-user backend");
	/* The same flags as vmp_vm_create's mapping. MAP_FIXED replaces the
	 * old pages atomically; KVM's MMU notifier drops its mappings of
	 * them, so the guest cannot see one byte of the last lease. */
	void *m = mmap(vm->mem, vm->mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return hatch_err_set(err, E(VM_ERROR), errno, "reset: mmap fresh guest memory");
	return 0;
}

int vmp_snap_reset(struct vmp_vm *vm, const struct vmp_kvm_host *h, int fd,
		   struct vmp_guest *g, struct vmp_snap_restore_stats *st,
		   bool *touched, struct hatch_err *err)
{
	*touched = true;
	g->ready = false;
	if (vmp_snap_drop_ram(vm, err) < 0)
		return -1;
	int r = vmp_snap_restore(vm, h, fd, g, st, touched, err);
	*touched = true;
	return r;
}
