/* virtio_mmio_kvm.h - bind a virtio-mmio device to KVM: an ioeventfd per
 * queue on QueueNotify and one irqfd on the device's GSI.
 *
 * With these, a guest's QueueNotify write completes inside KVM (no exit to
 * the vCPU thread: the eventfd is signalled) and the device's interrupt is
 * a write to an eventfd that KVM turns into an edge on the GSI. Tests do
 * not use this file: they drive vmp_virtio_mmio_notify() and count
 * raise_irq calls.
 *
 * Lifecycle: vmp_virtio_kvm_bind() after vmp_virtio_mmio_init() and before
 * any vCPU runs; pass vmp_virtio_kvm_raise_irq / the binding as the
 * device's raise_irq / irq_opaque (set with vmp_virtio_kvm_attach); poll
 * notify_fd[q]; vmp_virtio_kvm_unbind() before the VM fd closes (or just
 * let the VM go: closing the VM drops KVM's references, and unbind then
 * only closes our fds). The binding owns its eventfds.
 *
 * The main thread, on POLLIN of notify_fd[q]:
 *     vmp_virtio_kvm_drain(b, q);          // read the counter, lock-free
 *     lock the bus mutex;
 *     vmp_virtio_mmio_notify(dev, q);      // the device processes queue q
 *     unlock;
 */
#ifndef HATCHERY_VMP_VIRTIO_MMIO_KVM_H
#define HATCHERY_VMP_VIRTIO_MMIO_KVM_H

#include <stdint.h>

#include "devices/virtio_mmio.h"
#include "hatchery/error.h"

struct vmp_virtio_kvm {
	int vm_fd;              /* borrowed */
	uint64_t base;          /* the device's GPA */
	uint32_t gsi;
	unsigned nqueues;
	int notify_fd[VMP_VIRTIO_MAX_QUEUES]; /* owned; EFD_NONBLOCK|EFD_CLOEXEC */
	int irq_fd;             /* owned */
};

/* Create the eventfds and register them with KVM: KVM_IOEVENTFD on
 * base + 0x50, 4 bytes, datamatch = queue index, for each of the device's
 * queues; KVM_IRQFD on gsi. On failure everything done is undone and err
 * names the ioctl. */
int vmp_virtio_kvm_bind(struct vmp_virtio_kvm *b, int vm_fd, uint64_t base,
			uint32_t gsi, unsigned nqueues, struct hatch_err *err);

/* Make the device interrupt through the irqfd. */
void vmp_virtio_kvm_attach(struct vmp_virtio_kvm *b, struct vmp_virtio_mmio *d);

/* raise_irq for the device: one write to the irqfd (one edge). */
void vmp_virtio_kvm_raise_irq(void *binding);

/* Empty notify_fd[q]'s counter (any number of notifies since the last
 * drain count as one: the device processes the whole queue). */
void vmp_virtio_kvm_drain(struct vmp_virtio_kvm *b, unsigned q);

/* Deassign the ioeventfds and the irqfd and close every fd. Idempotent. */
void vmp_virtio_kvm_unbind(struct vmp_virtio_kvm *b);

#endif
