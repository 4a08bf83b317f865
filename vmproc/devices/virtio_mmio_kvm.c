/* virtio_mmio_kvm.c - ioeventfds and an irqfd for a virtio-mmio device:
 * see virtio_mmio_kvm.h. The only file of devices/ that calls KVM. */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "devices/virtio_mmio_kvm.h"
#include "hatchery/v1/common.pb-c.h"

#define E_VM HATCHERY__V1__ERROR_CODE__VM_ERROR

static int ioeventfd(struct vmp_virtio_kvm *b, unsigned q, uint32_t extra_flags)
{
	struct kvm_ioeventfd io = {
		.datamatch = q,
		.addr = b->base + VMP_VIRTIO_MMIO_NOTIFY,
		.len = 4,
		.fd = b->notify_fd[q],
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | extra_flags,
	};
	return ioctl(b->vm_fd, KVM_IOEVENTFD, &io);
}

static int irqfd(struct vmp_virtio_kvm *b, uint32_t extra_flags)
{
	struct kvm_irqfd f = { .fd = (uint32_t)b->irq_fd, .gsi = b->gsi,
			       .flags = extra_flags };
	return ioctl(b->vm_fd, KVM_IRQFD, &f);
}

static void init_empty(struct vmp_virtio_kvm *b, int vm_fd, uint64_t base,
		       uint32_t gsi, unsigned nqueues)
{
	memset(b, 0, sizeof(*b));
	b->vm_fd = vm_fd;
	b->base = base;
	b->gsi = gsi;
	b->nqueues = nqueues;
	for (unsigned q = 0; q < VMP_VIRTIO_MAX_QUEUES; q++)
		b->notify_fd[q] = -1;
	b->irq_fd = -1;
}

/* registered[q]: how many ioeventfds KVM holds; irq: whether the irqfd is. */
static void undo(struct vmp_virtio_kvm *b, unsigned registered, bool irq)
{
	int saved = errno;
	for (unsigned q = 0; q < registered; q++)
		ioeventfd(b, q, KVM_IOEVENTFD_FLAG_DEASSIGN);
	if (irq)
		irqfd(b, KVM_IRQFD_FLAG_DEASSIGN);
	for (unsigned q = 0; q < VMP_VIRTIO_MAX_QUEUES; q++)
		if (b->notify_fd[q] >= 0)
			close(b->notify_fd[q]);
	if (b->irq_fd >= 0)
		close(b->irq_fd);
	init_empty(b, b->vm_fd, b->base, b->gsi, b->nqueues);
	errno = saved;
}

int vmp_virtio_kvm_bind(struct vmp_virtio_kvm *b, int vm_fd, uint64_t base,
			uint32_t gsi, unsigned nqueues, struct hatch_err *err)
{
	init_empty(b, vm_fd, base, gsi, nqueues);
	if (nqueues == 0 || nqueues > VMP_VIRTIO_MAX_QUEUES)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
				     "virtio-mmio at %#llx: %u queues",
				     (unsigned long long)base, nqueues);
	b->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->irq_fd < 0) {
		int e = errno;
		undo(b, 0, false);
		return hatch_err_set(err, E_VM, e, "eventfd (irqfd, GSI %u)", gsi);
	}
	/* No KVM_IRQFD_FLAG_RESAMPLE: the GSI is edge-triggered (the DSDT
	 * says so), and a plain irqfd injects exactly an edge per write. */
	if (irqfd(b, 0) < 0) {
		int e = errno;
		undo(b, 0, false);
		return hatch_err_set(err, E_VM, e, "KVM_IRQFD GSI %u", gsi);
	}
	for (unsigned q = 0; q < nqueues; q++) {
		b->notify_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (b->notify_fd[q] < 0) {
			int e = errno;
			undo(b, q, true);
			return hatch_err_set(err, E_VM, e, "eventfd (queue %u)", q);
		}
		/* Not KVM_IOEVENTFD_FLAG_PIO: the notify register is MMIO. */
		if (ioeventfd(b, q, 0) < 0) {
			int e = errno;
			undo(b, q, true);
			return hatch_err_set(err, E_VM, e,
					     "KVM_IOEVENTFD %#llx datamatch %u",
					     (unsigned long long)(base + VMP_VIRTIO_MMIO_NOTIFY), q);
		}
	}
	return 0;
}

void vmp_virtio_kvm_attach(struct vmp_virtio_kvm *b, struct vmp_virtio_mmio *d)
{
	d->raise_irq = vmp_virtio_kvm_raise_irq;
	d->irq_opaque = b;
}

void vmp_virtio_kvm_raise_irq(void *opaque)
{
	struct vmp_virtio_kvm *b = opaque;
	uint64_t one = 1;
	/* EAGAIN means the counter is at its maximum: an interrupt is pending
	 * anyway. Nothing else can fail on an eventfd we own. */
	while (write(b->irq_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void vmp_virtio_kvm_drain(struct vmp_virtio_kvm *b, unsigned q)
{
	uint64_t n;
	if (q >= b->nqueues || b->notify_fd[q] < 0)
		return;
	while (read(b->notify_fd[q], &n, sizeof(n)) < 0 && errno == EINTR)
		;
}

void vmp_virtio_kvm_unbind(struct vmp_virtio_kvm *b)
{
	unsigned registered = 0;
	while (registered < b->nqueues && b->notify_fd[registered] >= 0)
		registered++;
	undo(b, registered, b->irq_fd >= 0);
}
