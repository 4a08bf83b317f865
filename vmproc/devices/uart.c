/* uart.c - the 16550A console. See uart.h. Register behaviour follows the
 * National Semiconductor PC16550D data sheet, limited to what the kernel's
 * 8250 driver looks at. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/uart.h"
#include "hatchery/v1/common.pb-c.h"

/* Register offsets (DLAB = LCR bit 7 selects DLL/DLM at 0 and 1). */
enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

#define IER_THRI      0x02
#define IIR_NO_INT    0x01
#define IIR_THRI      0x02
#define IIR_FIFO_ON   0xc0    /* both FIFO bits: what makes the probe say 16550A */
#define FCR_FIFO_EN   0x01
#define LCR_DLAB      0x80
#define MCR_LOOP      0x10
#define LSR_THRE      0x20
#define LSR_TEMT      0x40
#define MSR_CTS       0x10
#define MSR_DSR       0x20
#define MSR_RI        0x40
#define MSR_DCD       0x80

#define ECHO_LINE 512

struct vmp_uart {
	int vm_fd;
	unsigned irq;
	struct vmp_bus *bus;

	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thr_pending;       /* THR-empty interrupt latched, until IIR read */
	int irq_level;          /* last level given to KVM_IRQ_LINE */

	/* The ring: `len` bytes ending just before `head`. */
	uint8_t ring[VMP_UART_RING];
	size_t head, len;
	uint64_t written, dropped;

	int echo_fd;
	char echo[ECHO_LINE];
	size_t echo_len;
};

static void update_irq(struct vmp_uart *u)
{
	int level = (u->ier & IER_THRI) && u->thr_pending;
	if (level == u->irq_level)
		return;
	struct kvm_irq_level l = { .irq = u->irq, .level = (uint32_t)level };
	/* A failure here would be the VM fd gone: nothing to report to
	 * from inside a port write, and the guest only loses interrupts. */
	if (ioctl(u->vm_fd, KVM_IRQ_LINE, &l) == 0)
		u->irq_level = level;
}

static void echo_flush(struct vmp_uart *u)
{
	if (u->echo_fd >= 0 && u->echo_len) {
		ssize_t r = write(u->echo_fd, u->echo, u->echo_len);
		(void)r; /* a debugging copy: losing it is fine */
	}
	u->echo_len = 0;
}

static void put_byte(struct vmp_uart *u, uint8_t c)
{
	u->written++;
	if (c == '\r')
		return;
	u->ring[u->head] = c;
	u->head = (u->head + 1) % VMP_UART_RING;
	if (u->len < VMP_UART_RING)
		u->len++;
	else
		u->dropped++;
	if (u->echo_fd >= 0) {
		u->echo[u->echo_len++] = (char)c;
		if (c == '\n' || u->echo_len == ECHO_LINE)
			echo_flush(u);
	}
}

static uint8_t read_iir(struct vmp_uart *u)
{
	uint8_t fifo = (u->fcr & FCR_FIFO_EN) ? IIR_FIFO_ON : 0;
	if ((u->ier & IER_THRI) && u->thr_pending) {
		/* Reading IIR with THRE as its source clears that source. */
		u->thr_pending = false;
		update_irq(u);
		return fifo | IIR_THRI;
	}
	return fifo | IIR_NO_INT;
}

static uint8_t read_msr(const struct vmp_uart *u)
{
	if (u->mcr & MCR_LOOP) {
		/* Loopback: the modem outputs come back as inputs; the 8250
		 * probe checks RTS|OUT2 -> CTS|DCD. */
		uint8_t m = 0;
		if (u->mcr & 0x01) m |= MSR_DSR;
		if (u->mcr & 0x02) m |= MSR_CTS;
		if (u->mcr & 0x04) m |= MSR_RI;
		if (u->mcr & 0x08) m |= MSR_DCD;
		return m;
	}
	return MSR_DCD | MSR_DSR | MSR_CTS; /* a peer is always there */
}

static uint8_t reg_read(struct vmp_uart *u, unsigned reg)
{
	bool dlab = u->lcr & LCR_DLAB;
	switch (reg) {
	case RBR_THR: return dlab ? u->dll : 0;
	case IER:     return dlab ? u->dlm : u->ier;
	case IIR_FCR: return read_iir(u);
	case LCR:     return u->lcr;
	case MCR:     return u->mcr;
	case LSR:     return LSR_THRE | LSR_TEMT; /* sent at once; nothing received */
	case MSR:     return read_msr(u);
	default:      return u->scr;
	}
}

static void reg_write(struct vmp_uart *u, unsigned reg, uint8_t v)
{
	bool dlab = u->lcr & LCR_DLAB;
	switch (reg) {
	case RBR_THR:
		if (dlab) {
			u->dll = v;
			return;
		}
		if (!(u->mcr & MCR_LOOP)) /* loopback: the byte never leaves */
			put_byte(u, v);
		u->thr_pending = true;
		update_irq(u);
		return;
	case IER:
		if (dlab) {
			u->dlm = v;
			return;
		}
		/* Only the four standard bits: the probe writes bit 6 (XScale's
		 * UUE) and must read it back as 0. Enabling THRI while THR is
		 * empty raises the interrupt at once, as the chip does. */
		if ((v & IER_THRI) && !(u->ier & IER_THRI))
			u->thr_pending = true;
		u->ier = v & 0x0f;
		update_irq(u);
		return;
	case IIR_FCR:
		u->fcr = v & 0xc9; /* enable, DMA mode, trigger level; resets self-clear */
		return;
	case LCR: u->lcr = v; return;
	case MCR: u->mcr = v & 0x1f; return;
	case SCR: u->scr = v; return;
	default:  return; /* LSR, MSR: read-only */
	}
}

static void uart_read(void *opaque, uint64_t off, uint8_t *data, unsigned len)
{
	struct vmp_uart *u = opaque;
	data[0] = reg_read(u, (unsigned)off);
	for (unsigned i = 1; i < len; i++) /* wider accesses: byte registers */
		data[i] = off + i < 8 ? reg_read(u, (unsigned)(off + i)) : 0xff;
}

static enum vmp_bus_action uart_write(void *opaque, uint64_t off, const uint8_t *data,
				      unsigned len)
{
	struct vmp_uart *u = opaque;
	for (unsigned i = 0; i < len && off + i < 8; i++)
		reg_write(u, (unsigned)(off + i), data[i]);
	return VMP_BUS_CONTINUE;
}

static const struct vmp_bus_ops uart_ops = { .read = uart_read, .write = uart_write };

int vmp_uart_create(struct vmp_bus *bus, int vm_fd, uint16_t port, unsigned irq,
		    struct vmp_uart **out, struct hatch_err *err)
{
	struct vmp_uart *u = calloc(1, sizeof(*u));
	if (!u)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, ENOMEM, "uart");
	u->vm_fd = vm_fd;
	u->irq = irq;
	u->bus = bus;
	u->echo_fd = -1;
	if (vmp_bus_register(bus, VMP_BUS_PIO, port, 8, &uart_ops, u, err) < 0) {
		free(u);
		return -1;
	}
	*out = u;
	return 0;
}

void vmp_uart_destroy(struct vmp_uart *u)
{
	if (!u)
		return;
	echo_flush(u);
	free(u);
}

void vmp_uart_set_echo(struct vmp_uart *u, int fd)
{
	vmp_bus_lock(u->bus);
	echo_flush(u);
	u->echo_fd = fd;
	vmp_bus_unlock(u->bus);
}

size_t vmp_uart_tail(struct vmp_uart *u, unsigned nlines, char *buf, size_t cap)
{
	if (cap == 0)
		return 0;
	vmp_bus_lock(u->bus);
	size_t start = (u->head + VMP_UART_RING - u->len) % VMP_UART_RING;
#define AT(i) u->ring[(start + (i)) % VMP_UART_RING]
	/* Walk back from the end over nlines line ends; a trailing '\n'
	 * ends the last line rather than starting an empty one. */
	size_t n = u->len, from = 0;
	if (n && AT(n - 1) == '\n')
		n--;
	unsigned seen = 0;
	for (size_t i = n; i > 0; i--) {
		if (AT(i - 1) == '\n' && ++seen == nlines) {
			from = i;
			break;
		}
	}
	if (nlines == 0)
		from = u->len;
	size_t take = u->len - from;
	if (take > cap - 1) {
		from += take - (cap - 1);
		take = cap - 1;
	}
	for (size_t i = 0; i < take; i++)
		buf[i] = (char)AT(from + i);
#undef AT
	buf[take] = 0;
	vmp_bus_unlock(u->bus);
	return take;
}

void vmp_uart_counts(struct vmp_uart *u, uint64_t *written, uint64_t *dropped)
{
	vmp_bus_lock(u->bus);
	*written = u->written;
	*dropped = u->dropped;
	vmp_bus_unlock(u->bus);
}

void vmp_uart_save(struct vmp_uart *u, struct snap_uart *s)
{
	vmp_bus_lock(u->bus);
	*s = (struct snap_uart){
		.ier = u->ier, .lcr = u->lcr, .mcr = u->mcr, .scr = u->scr,
		.fcr = u->fcr, .dll = u->dll, .dlm = u->dlm,
		.thr_pending = u->thr_pending, .irq_level = u->irq_level == 1,
	};
	vmp_bus_unlock(u->bus);
}

void vmp_uart_restore(struct vmp_uart *u, const struct snap_uart *s)
{
	vmp_bus_lock(u->bus);
	u->ier = s->ier;
	u->lcr = s->lcr;
	u->mcr = s->mcr;
	u->scr = s->scr;
	u->fcr = s->fcr;
	u->dll = s->dll;
	u->dlm = s->dlm;
	u->thr_pending = s->thr_pending;
	/* What an earlier guest of this machine said is not this one's
	 * (a reset for the next lease must not show it to the next client). */
	u->head = u->len = 0;
	u->echo_len = 0;
	u->irq_level = -1; /* unknown: update_irq drives it either way */
	update_irq(u);
	vmp_bus_unlock(u->bus);
}
