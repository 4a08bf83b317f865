/* machine.c - a Linux guest's machine, assembled: boot.c loads the kernel,
 * the bus carries COM1, the i8042 and the agent's virtio-console, vcpus.c
 * runs the vCPUs, and the agent channel's frames wait here for the child's
 * main thread. See machine.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/agent_chan.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/uart.h"
#include "devices/vhost_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_mmio_kvm.h"
#include "hatchery/ipc.h"
#include "hatchery/v1/common.pb-c.h"
#include "linux/boot.h"
#include "linux/machine.h"
#include "linux/vcpus.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* Whole frames from the agent that the main thread has not taken yet.
 * The guest cannot be held back (hvc spins until each transmit buffer is
 * returned), so they are copied here as they come; the main thread takes
 * them after each vmp_linux_process. The bound is far above what one
 * notification can carry (a queue of 128 buffers of 4 KiB); an agent that
 * outruns it is treated as broken. */
#define INBOX_MAX (4u << 20)

#define AGENT_DEV VMP_LINUX_AGENT_DEV
#define DISK_DEV VMP_LINUX_DISK_DEV
#define DISK_POLLFD 3 /* after the vCPUs' eventfd and the console's two queues */
#define DISK_ERR_POLLFD 4

struct vmp_linux {
	struct vmp_vm *vm;
	struct vmp_bus *bus;
	struct vmp_uart *uart;
	struct vmp_vcpus *vcpus;
	struct vmp_console con;
	struct vmp_virtio_kvm kb;
	struct vmp_agent_chan *chan;
	bool has_disk;
	struct vmp_vhost_blk disk;
	struct vmp_virtio_kvm disk_kb;   /* the disk queue's kick, its interrupt */
	uint8_t *inbox;          /* [u32 length][payload]..., INBOX_MAX bytes */
	size_t in_start, in_end; /* unread bytes are [in_start, in_end) */
	int chan_err;            /* the channel broke: -errno, and why */
	char chan_why[192];
};

/* ---- the bus: the virtio transport's register handlers ------------------ */

static void mmio_read(void *opaque, uint64_t off, uint8_t *data, unsigned len)
{
	vmp_virtio_mmio_read(opaque, off, data, len);
}

static enum vmp_bus_action mmio_write(void *opaque, uint64_t off, const uint8_t *data,
				      unsigned len)
{
	vmp_virtio_mmio_write(opaque, off, data, len);
	return VMP_BUS_CONTINUE;
}

static const struct vmp_bus_ops virtio_bus_ops = { .read = mmio_read, .write = mmio_write };

/* ---- the agent channel's callbacks (under the bus mutex) ------------------ */

static int on_frame(void *opaque, const uint8_t *payload, size_t len)
{
	struct vmp_linux *m = opaque;
	if (m->in_start == m->in_end)
		m->in_start = m->in_end = 0;
	if (len + 4 > INBOX_MAX - m->in_end) {
		/* Make room at the front; what the main thread took is gone. */
		memmove(m->inbox, m->inbox + m->in_start, m->in_end - m->in_start);
		m->in_end -= m->in_start;
		m->in_start = 0;
		if (len + 4 > INBOX_MAX - m->in_end)
			return -ENOBUFS;
	}
	uint32_t l = (uint32_t)len;
	memcpy(m->inbox + m->in_end, &l, 4);
	memcpy(m->inbox + m->in_end + 4, payload, len);
	m->in_end += 4 + len;
	return 0;
}

static void on_error(void *opaque, int err, const char *why)
{
	struct vmp_linux *m = opaque;
	if (m->chan_err)
		return;
	m->chan_err = err ? err : -EPROTO;
	snprintf(m->chan_why, sizeof(m->chan_why), "%s", why ? why : "?");
}

static void on_space(void *opaque)
{
	(void)opaque; /* the main loop asks for room on every turn */
}

static const struct vmp_agent_chan_cbs chan_cbs = {
	.on_frame = on_frame, .on_error = on_error, .on_space = on_space,
};

/* ---- lifecycle ------------------------------------------------------------ */

/* Device 1: the disk. Its queue's ioeventfd is the backend's kick fd and
 * its irqfd the backend's call fd, so requests go guest -> backend ->
 * guest without this process; the main thread polls only the
 * connection, for the backend going away. */
static int add_disk(struct vmp_linux *m, int disk_fd, struct hatch_err *err)
{
	struct vmp_vm *vm = m->vm;
	if (vm->mem_fd < 0)
		return hatch_err_set(err, E(INTERNAL), 0,
				     "disk: guest memory is not shared (VMP_VM_SHARED_MEM)");
	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned n = snap_ram_slots(vm->mem_size, slot);
	struct vhu_mem_region r[SNAP_RAM_SLOTS];
	for (unsigned i = 0; i < n; i++)
		r[i] = (struct vhu_mem_region){
			.gpa = slot[i].gpa, .size = slot[i].len,
			.uva = (uint64_t)(uintptr_t)(vm->mem + slot[i].offset),
			.mmap_offset = slot[i].offset,
		};
	if (vmp_virtio_kvm_bind(&m->disk_kb, vm->vm_fd, VMP_VIRTIO_MMIO_BASE(DISK_DEV),
				VMP_VIRTIO_MMIO_GSI(DISK_DEV), 1, err) < 0)
		return hatch_err_wrap(err, "disk");
	struct vmp_vhost_blk_params p = {
		.sock = disk_fd, .regions = r, .nregions = n, .mem_fd = vm->mem_fd,
		.xlate = vmp_vm_gpa_xlate, .xlate_opaque = vm,
		.kick_fd = m->disk_kb.notify_fd[0], .call_fd = m->disk_kb.irq_fd,
		.raise_irq = vmp_virtio_kvm_raise_irq, .irq_opaque = &m->disk_kb,
	};
	if (vmp_vhost_blk_init(&m->disk, &p, err) < 0)
		return -1;
	if (vmp_bus_register(m->bus, VMP_BUS_MMIO, VMP_VIRTIO_MMIO_BASE(DISK_DEV), 0x1000,
			     &virtio_bus_ops, &m->disk.mmio, err) < 0)
		return -1;
	m->has_disk = true;
	return 0;
}

/* On failure the child exits: whatever was built goes with the process
 * (no destroy, see machine.h). */
int vmp_linux_create(struct vmp_vm *vm, const struct vmp_linux_config *cfg,
		     struct vmp_linux **out, struct hatch_err *err)
{
	struct vmp_linux *m = calloc(1, sizeof(*m));
	if (!m || !(m->inbox = malloc(INBOX_MAX)))
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "linux machine");
	m->vm = vm;
	char cmdline[VMP_LINUX_CMDLINE_MAX];
	snprintf(cmdline, sizeof(cmdline), "%s%s%s", VMP_LINUX_CMDLINE_DEFAULT,
		 cfg->cmdline_extra ? " " : "", cfg->cmdline_extra ? cfg->cmdline_extra : "");
	struct vmp_linux_boot b = {
		.kernel = cfg->kernel, .kernel_len = cfg->kernel_len,
		.initrd = cfg->initrd, .initrd_len = cfg->initrd_len,
		.cmdline = cmdline, .nvirtio = cfg->disk ? 2 : 1,
	};
	if (vmp_linux_cpu_init(vm, cfg->host_cpuid, err) < 0 ||
	    (cfg->kernel && vmp_linux_load(vm, &b, NULL, err) < 0))
		return -1;
	if (vmp_bus_create(&m->bus, err) < 0 ||
	    vmp_uart_create(m->bus, vm->vm_fd, VMP_UART_COM1_BASE, VMP_UART_COM1_IRQ,
			    &m->uart, err) < 0 ||
	    vmp_i8042_attach(m->bus, err) < 0)
		return -1;
	m->chan = vmp_agent_chan_new(&m->con, 0, &chan_cbs, m, err);
	if (!m->chan)
		return -1;
	if (vmp_console_init(&m->con, &vmp_agent_chan_console_cbs, m->chan, vmp_vm_gpa_xlate,
			     vm, NULL, NULL) < 0)
		return hatch_err_set(err, E(INTERNAL), EINVAL, "virtio-console init");
	if (vmp_virtio_kvm_bind(&m->kb, vm->vm_fd, VMP_VIRTIO_MMIO_BASE(AGENT_DEV),
				VMP_VIRTIO_MMIO_GSI(AGENT_DEV), 2, err) < 0)
		return -1;
	vmp_virtio_kvm_attach(&m->kb, &m->con.mmio);
	if (vmp_bus_register(m->bus, VMP_BUS_MMIO, VMP_VIRTIO_MMIO_BASE(AGENT_DEV), 0x1000,
			     &virtio_bus_ops, &m->con.mmio, err) < 0)
		return -1;
	if (cfg->disk && add_disk(m, cfg->disk_fd, err) < 0)
		return -1;
	if (vmp_vcpus_create(vm, m->bus, &m->vcpus, err) < 0)
		return -1;
	*out = m;
	return 0;
}

int vmp_linux_start(struct vmp_linux *m, struct hatch_err *err)
{
	(void)err;
	vmp_vcpus_start(m->vcpus);
	return 0;
}

size_t vmp_linux_pollfds(struct vmp_linux *m, struct pollfd *fds)
{
	fds[0] = (struct pollfd){ .fd = vmp_vcpus_eventfd(m->vcpus), .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = m->kb.notify_fd[0], .events = POLLIN };
	fds[2] = (struct pollfd){ .fd = m->kb.notify_fd[1], .events = POLLIN };
	if (!m->has_disk)
		return 3;
	vmp_bus_lock(m->bus);
	fds[DISK_POLLFD] = (struct pollfd){ .fd = vmp_vhost_blk_pollfd(&m->disk),
					    .events = POLLIN };
	fds[DISK_ERR_POLLFD] = (struct pollfd){ .fd = vmp_vhost_blk_err_fd(&m->disk),
						.events = POLLIN };
	vmp_bus_unlock(m->bus);
	return 5;
}

/* The disk's backend closed, failed a request a vCPU made (a driver's
 * DRIVER_OK or reset), or stopped the ring the guest broke: the VM ends
 * with the reason. */
static int disk_check(struct vmp_linux *m, const struct pollfd *fds, size_t n,
		      struct hatch_err *err)
{
	vmp_bus_lock(m->bus);
	if (n > DISK_POLLFD && fds[DISK_POLLFD].revents)
		vmp_vhost_blk_conn_event(&m->disk);
	if (n > DISK_ERR_POLLFD && (fds[DISK_ERR_POLLFD].revents & POLLIN))
		vmp_vhost_blk_err_event(&m->disk);
	int code;
	const char *why = vmp_vhost_blk_failed(&m->disk, &code);
	if (why)
		hatch_err_set(err, code, 0, "%s", why);
	vmp_bus_unlock(m->bus);
	return why ? -1 : 0;
}

/* Why the VM ended, for a user: the vCPUs' reason, the console's last
 * lines. */
static int ended(struct vmp_linux *m, struct hatch_err *err)
{
	char why[256], tail[1024];
	enum vmp_vm_end e = vmp_vcpus_end(m->vcpus, why, sizeof(why));
	vmp_linux_console_tail(m, tail, sizeof(tail), 8);
	return hatch_err_set(err, e == VMP_VM_HOST_ERROR ? E(VM_ERROR) : E(GUEST_FAULT), 0,
			     "%s%s%s", why, tail[0] ? "; console's last lines:\n" : "", tail);
}

int vmp_linux_process(struct vmp_linux *m, const struct pollfd *fds, size_t n,
		      struct hatch_err *err)
{
	for (size_t i = 1; i < n && i < 3; i++) {
		if (!(fds[i].revents & POLLIN))
			continue;
		unsigned q = (unsigned)(i - 1);
		vmp_virtio_kvm_drain(&m->kb, q);
		vmp_bus_lock(m->bus);
		vmp_virtio_mmio_notify(&m->con.mmio, q);
		vmp_bus_unlock(m->bus);
	}
	if (n > 0 && (fds[0].revents & POLLIN))
		return ended(m, err);
	if (m->has_disk && disk_check(m, fds, n, err) < 0)
		return -1;
	if (m->chan_err && m->in_start == m->in_end)
		return hatch_err_set(err, E(GUEST_FAULT), 0, "agent channel: %s", m->chan_why);
	return 0;
}

int vmp_linux_agent_send(struct vmp_linux *m, const void *frame, size_t len)
{
	if (len > IPC_MAX_MSG)
		return -EMSGSIZE;
	vmp_bus_lock(m->bus);
	int r = vmp_agent_chan_send(m->chan, frame, len);
	vmp_bus_unlock(m->bus);
	return r == -EPIPE ? -EAGAIN : r;
}

size_t vmp_linux_agent_room(const struct vmp_linux *m)
{
	vmp_bus_lock(m->bus);
	size_t r = vmp_agent_chan_outbox_free(m->chan);
	vmp_bus_unlock(m->bus);
	return r;
}

int vmp_linux_agent_recv(struct vmp_linux *m, const uint8_t **frame, size_t *len,
			 struct hatch_err *err)
{
	vmp_bus_lock(m->bus);
	int r = 0;
	if (m->in_end - m->in_start >= 4) {
		uint32_t l;
		memcpy(&l, m->inbox + m->in_start, 4);
		*frame = m->inbox + m->in_start + 4;
		*len = l;
		m->in_start += 4 + l;
		r = 1;
	} else if (m->chan_err) {
		r = -1;
		hatch_err_set(err, E(GUEST_FAULT), 0, "agent channel: %s", m->chan_why);
	}
	vmp_bus_unlock(m->bus);
	return r;
}

/* ---- snapshots ------------------------------------------------------------ */

int vmp_linux_pause(struct vmp_linux *m, struct hatch_err *err)
{
	if (vmp_vcpus_pause(m->vcpus) < 0)
		return ended(m, err);
	return 0;
}

void vmp_linux_resume(struct vmp_linux *m)
{
	vmp_vcpus_start(m->vcpus); /* the first time: the gate opens */
	vmp_vcpus_resume(m->vcpus);
}

int vmp_linux_devices_save(struct vmp_linux *m, struct snap_devices *d,
			   struct hatch_err *err)
{
	memset(d, 0, sizeof(*d));
	if (m->has_disk)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "a VM with a disk takes no snapshot (its queue is in the "
				     "disk's backend, and its memory is shared with it)");
	vmp_bus_lock(m->bus);
	bool idle = vmp_agent_chan_idle(m->chan) && m->in_start == m->in_end && !m->chan_err;
	vmp_agent_chan_save(m->chan, &d->agent);
	vmp_virtio_mmio_save(&m->con.mmio, &d->virtio[AGENT_DEV]);
	vmp_bus_unlock(m->bus);
	if (!idle)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "the agent channel has a frame in flight: save between "
				     "operations");
	vmp_uart_save(m->uart, &d->uart);
	d->machine = SNAP_MACHINE_LINUX;
	d->nvirtio = 1;
	return 0;
}

int vmp_linux_devices_check(const struct snap_devices *d, struct hatch_err *err)
{
	/* What vmp_linux_create builds: one virtio-console, VERSION_1 only. */
	const uint64_t console_features = 1ull << 32; /* VIRTIO_F_VERSION_1 */
	if (d->machine != SNAP_MACHINE_LINUX)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "snapshot's machine type %u, this build's Linux machine is %u",
				     d->machine, SNAP_MACHINE_LINUX);
	if (d->nvirtio != 1)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "snapshot has %u virtio devices, this pool's machine has 1 "
				     "(the agent's console)", d->nvirtio);
	const struct snap_virtio_dev *v = &d->virtio[AGENT_DEV];
	if (v->device_id != 3 || v->nqueues != 2 || v->device_features != console_features)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "snapshot's virtio device 0 is type %u with %u queues and "
				     "features %#llx; this pool's is the agent's console (type 3, "
				     "2 queues, features %#llx)", v->device_id, v->nqueues,
				     (unsigned long long)v->device_features,
				     (unsigned long long)console_features);
	return 0;
}

int vmp_linux_devices_restore(struct vmp_linux *m, const struct snap_devices *d,
			      struct hatch_err *err)
{
	if (vmp_linux_devices_check(d, err) < 0)
		return -1;
	vmp_uart_restore(m->uart, &d->uart);
	vmp_bus_lock(m->bus);
	/* The channel first: the transport's restore resets the device,
	 * which a channel that has seen traffic would take for a lost
	 * stream. */
	vmp_agent_chan_restore(m->chan, &(struct snap_agent_chan){ 0 });
	int r = vmp_virtio_mmio_restore(&m->con.mmio, &d->virtio[AGENT_DEV]);
	vmp_agent_chan_restore(m->chan, &d->agent);
	m->in_start = m->in_end = 0;
	m->chan_err = 0;
	vmp_bus_unlock(m->bus);
	if (r < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), -r,
				     "snapshot's virtio device 0 state does not fit the device "
				     "(rings outside guest memory?)");
	return 0;
}

void vmp_linux_kick(struct vmp_linux *m)
{
	vmp_bus_lock(m->bus);
	for (unsigned q = 0; q < 2; q++)
		vmp_virtio_mmio_notify(&m->con.mmio, q);
	vmp_virtio_mmio_repost_irq(&m->con.mmio);
	vmp_bus_unlock(m->bus);
}

size_t vmp_linux_console_tail(struct vmp_linux *m, char *buf, size_t len, unsigned lines)
{
	if (!m || !m->uart) {
		if (len)
			buf[0] = '\0';
		return 0;
	}
	return vmp_uart_tail(m->uart, lines, buf, len);
}
