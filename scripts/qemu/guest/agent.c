/* sp-agent: the guest end of the harness's control channel (normally PID 1's last exec).
 *
 * Usage: sp-agent [--port /dev/ttyS1] [--ready]
 *   --ready  print "SAMEPAGE: READY" on stdout (the console) once the port is open
 *
 * Protocol: ASCII lines, one frame each, so that nothing the serial line or a half-read
 * buffer does can split a frame ambiguously; payloads are base64 so they never contain
 * a newline.
 *   host -> guest   SP1 PING <id> | SP1 EXEC <id> <b64 command> | SP1 KILL <id>
 *   guest -> host   SP1 HELLO | SP1 PONG <id> | SP1 OUT <id> <b64> | SP1 ERR <id> <b64>
 *                   SP1 EXIT <id> <code> | SP1 FAIL <id> <b64 reason>
 * A command runs as "/bin/sh -c <command>" in its own session with stdin on /dev/null;
 * <code> is its exit status, or 128+signal when killed. One command runs at a time (the host
 * queues); EXEC while busy gets FAIL. Lines not starting with "SP1 " are ignored. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SP_MAX_LINE (1u << 20)
#define SP_CHUNK 3072 /* raw bytes per OUT/ERR frame: 4 KiB of base64 */

static const char sp_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t sp_b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = sp_b64[(v >> 18) & 63];
		out[o++] = sp_b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? sp_b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? sp_b64[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int sp_b64_value(char c)
{
	const char *p = c ? strchr(sp_b64, c) : NULL;
	return p ? (int)(p - sp_b64) : -1;
}

/* Decodes in place; returns the decoded length or -EINVAL. */
static long sp_b64_decode(char *s)
{
	size_t n = strlen(s), o = 0;
	uint8_t *out = (uint8_t *)s;

	if (n % 4)
		return -EINVAL;
	for (size_t i = 0; i < n; i += 4) {
		int a = sp_b64_value(s[i]), b = sp_b64_value(s[i + 1]);
		int c = s[i + 2] == '=' ? 0 : sp_b64_value(s[i + 2]);
		int d = s[i + 3] == '=' ? 0 : sp_b64_value(s[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -EINVAL;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		out[o++] = (uint8_t)(v >> 16);
		if (s[i + 2] != '=')
			out[o++] = (uint8_t)(v >> 8);
		if (s[i + 3] != '=')
			out[o++] = (uint8_t)v;
	}
	out[o] = '\0';
	return (long)o;
}

static int sp_port = -1;

static long sp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sp_write_all(const char *buf, size_t n)
{
	while (n) {
		ssize_t w = write(sp_port, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the host went away; it resynchronises on the next frame */
		buf += w;
		n -= (size_t)w;
	}
}

static void sp_frame(const char *kind, const char *id, const uint8_t *data, size_t n)
{
	static char line[64 + SP_CHUNK * 4 / 3 + 8];
	int h = snprintf(line, sizeof(line), "SP1 %s %s", kind, id);

	if (data) {
		line[h++] = ' ';
		h += (int)sp_b64_encode(data, n, line + h);
	}
	line[h++] = '\n';
	sp_write_all(line, (size_t)h);
}

static void sp_fail(const char *id, const char *why)
{
	sp_frame("FAIL", id, (const uint8_t *)why, strlen(why));
}

struct sp_job {
	pid_t pid;
	int out, err; /* -1 once at EOF */
	int status, exited;
	long exited_at; /* ms, 0 until seen exited */
	long last_data_at; /* ms of the last output forwarded */
	char id[32];
};

static struct sp_job sp_job = { .pid = -1, .out = -1, .err = -1 };

static void sp_start(const char *id, char *cmd_b64)
{
	int po[2], pe[2];

	if (sp_job.pid > 0) {
		sp_fail(id, "busy: a command is still running");
		return;
	}
	if (sp_b64_decode(cmd_b64) < 0) {
		sp_fail(id, "command is not valid base64");
		return;
	}
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		sp_fail(id, "pipe failed");
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
		sp_fail(id, "fork failed");
		return;
	}
	if (pid == 0) {
		/* Own session and process group, so KILL reaches the command's children too. */
		setsid();
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd_b64, (char *)NULL);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	sp_job = (struct sp_job){ .pid = pid, .out = po[0], .err = pe[0] };
	snprintf(sp_job.id, sizeof(sp_job.id), "%s", id);
}

static int sp_valid_id(const char *id)
{
	if (!*id || strlen(id) > 20)
		return 0;
	for (; *id; id++)
		if (*id < '0' || *id > '9')
			return 0;
	return 1;
}

static void sp_handle_line(char *line)
{
	char *save = NULL;

	if (strncmp(line, "SP1 ", 4) != 0)
		return;
	strtok_r(line, " ", &save);
	char *verb = strtok_r(NULL, " ", &save);
	char *id = strtok_r(NULL, " ", &save);
	char *arg = strtok_r(NULL, " ", &save);
	if (!verb || !id || !sp_valid_id(id))
		return;
	if (strcmp(verb, "PING") == 0)
		sp_frame("PONG", id, NULL, 0);
	else if (strcmp(verb, "EXEC") == 0 && arg)
		sp_start(id, arg);
	else if (strcmp(verb, "KILL") == 0) {
		if (sp_job.pid > 0 && strcmp(sp_job.id, id) == 0)
			kill(-sp_job.pid, SIGKILL);
	} else
		sp_fail(id, "unknown or incomplete request");
}

/* Forward what the command wrote; returns 0 at EOF. */
static int sp_pump(int *fd, const char *kind)
{
	uint8_t buf[SP_CHUNK];
	ssize_t n = read(*fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return 0;
	}
	sp_frame(kind, sp_job.id, buf, (size_t)n);
	/* After the frame is out, not before: on a loaded TCG guest one 4 KiB frame can take
	 * longer than the 200 ms quiet time to drain through the UART, and stamping the read
	 * instead cut a 10 KB fio result after two frames. */
	sp_job.last_data_at = sp_now_ms();
	return 1;
}

/* As PID 1 we inherit every orphan, the fill daemon's among them: reap them all, and note
 * the status of the running command when it is one of them. */
static void sp_reap(void)
{
	int st;
	pid_t p;

	while ((p = waitpid(-1, &st, WNOHANG)) > 0)
		if (p == sp_job.pid) {
			sp_job.exited = 1;
			sp_job.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
}

static int sp_open_port(const char *path)
{
	int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios t;

	if (fd < 0)
		return -errno;
	/* Raw: no echo, no CR/LF translation, no line editing, no signals from bytes. */
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		t.c_cflag |= CLOCAL | CREAD;
		cfsetispeed(&t, B115200);
		cfsetospeed(&t, B115200);
		tcsetattr(fd, TCSANOW, &t);
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *port = "/dev/ttyS1";
	int ready = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = argv[++i];
		else if (strcmp(argv[i], "--ready") == 0)
			ready = 1;
		else {
			fprintf(stderr, "usage: sp-agent [--port DEV] [--ready]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	sp_port = sp_open_port(port);
	if (sp_port < 0) {
		printf("SAMEPAGE: ERROR agent: cannot open %s: %s\n", port, strerror(-sp_port));
		fflush(stdout);
		/* PID 1 must not exit (the kernel would panic); keep reaping instead. */
		for (;;) {
			while (waitpid(-1, NULL, 0) > 0)
				;
			pause();
		}
	}
	sp_frame("HELLO", "0", NULL, 0);
	if (ready) {
		printf("SAMEPAGE: READY\n");
		fflush(stdout);
	}

	char *line = malloc(SP_MAX_LINE + 1);
	size_t len = 0;
	if (!line)
		return 1;
	for (;;) {
		struct pollfd p[3] = { { sp_port, POLLIN, 0 }, { sp_job.out, POLLIN, 0 }, { sp_job.err, POLLIN, 0 } };
		/* The timeout bounds how long a reaped command's EXIT waits when a background child
		 * of it still holds the output pipes open. */
		int n = poll(p, 3, 100);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t r = read(sp_port, line + len, SP_MAX_LINE - len);
			if (r > 0) {
				len += (size_t)r;
				char *start = line, *nl;
				while ((nl = memchr(start, '\n', len - (size_t)(start - line)))) {
					*nl = '\0';
					if (nl > start && nl[-1] == '\r')
						nl[-1] = '\0';
					sp_handle_line(start);
					start = nl + 1;
				}
				len -= (size_t)(start - line);
				memmove(line, start, len);
				if (len == SP_MAX_LINE)
					len = 0; /* an overlong line is dropped whole */
			} else if (r < 0 && errno != EINTR && errno != EAGAIN) {
				usleep(100000);
			}
		}
		if (sp_job.out >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
			sp_pump(&sp_job.out, "OUT");
		if (sp_job.err >= 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR)))
			sp_pump(&sp_job.err, "ERR");
		sp_reap();
		if (sp_job.pid > 0 && sp_job.exited) {
			/* Report once both pipes are at EOF, or when a background child of the command
			 * still holds one open: 200 ms after the command exited and output stopped
			 * coming (counting from the last data, so output still buffered in a pipe on a
			 * slow, loaded guest is forwarded, not cut). */
			long now = sp_now_ms();
			if (!sp_job.exited_at)
				sp_job.exited_at = now;
			long quiet_since = sp_job.last_data_at > sp_job.exited_at ? sp_job.last_data_at : sp_job.exited_at;
			int pending = (p[1].revents | p[2].revents) & POLLIN;
			if ((sp_job.out < 0 && sp_job.err < 0) || (!pending && now - quiet_since >= 200)) {
				if (sp_job.out >= 0)
					close(sp_job.out);
				if (sp_job.err >= 0)
					close(sp_job.err);
				char msg[64];
				int m = snprintf(msg, sizeof(msg), "SP1 EXIT %s %d\n", sp_job.id, sp_job.status);
				sp_write_all(msg, (size_t)m);
				sp_job = (struct sp_job){ .pid = -1, .out = -1, .err = -1 };
			}
		}
	}
}
