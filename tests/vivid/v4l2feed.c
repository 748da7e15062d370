/* v4l2feed.c - feeds compressed frames into a v4l2loopback node, so that the
 * node is a camera that delivers them (tests/integration/vivid.rs).
 *
 *   v4l2feed DEV FOURCC WIDTH HEIGHT FPS FRAMES [SECONDS]
 *
 * FRAMES is a file of frames, each a 32-bit little-endian length and that many
 * bytes (a JPEG, or an H.264 access unit). Sets the OUTPUT format of DEV
 * (VIDIOC_S_FMT: FOURCC, e.g. MJPG or H264, at WIDTH x HEIGHT), then writes the
 * frames one per write() at FPS, looping over the file, for SECONDS (default:
 * until killed). v4l2loopback takes each write() as one frame (its bytesused is
 * the length written) as long as it fits the buffer, whose size it derives
 * from the format (width x height x 4 for compressed formats): a frame that
 * does not fit, or a short write, is an error here, never a silent cut.
 * Prints "feeding" once the first frame is in, and "fed N frames" at the end.
 *
 * Build: gcc -O2 -static -o v4l2feed v4l2feed.c
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do r = ioctl(fd, req, arg); while (r == -1 && errno == EINTR);
	return r;
}

struct frame { const uint8_t *data; uint32_t len; };

int main(int argc, char **argv)
{
	if (argc < 7 || strlen(argv[2]) != 4) {
		fprintf(stderr, "usage: %s DEV FOURCC WIDTH HEIGHT FPS FRAMES [SECONDS]\n", argv[0]);
		return 2;
	}
	const char *dev = argv[1], *fourcc = argv[2], *path = argv[6];
	unsigned width = strtoul(argv[3], NULL, 10), height = strtoul(argv[4], NULL, 10);
	double fps = strtod(argv[5], NULL), seconds = argc > 7 ? strtod(argv[7], NULL) : 0;
	if (width == 0 || height == 0 || !(fps > 0 && fps <= 1000)) {
		fprintf(stderr, "bad size or rate\n");
		return 2;
	}

	/* the frames, all in memory */
	FILE *f = fopen(path, "rb");
	if (!f) { perror(path); return 1; }
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || st.st_size <= 0) { fprintf(stderr, "%s: empty\n", path); return 1; }
	uint8_t *all = malloc(st.st_size);
	if (!all || fread(all, 1, st.st_size, f) != (size_t)st.st_size) { perror(path); return 1; }
	fclose(f);
	size_t n = 0, cap = 64, off = 0;
	uint32_t largest = 0;
	struct frame *frames = malloc(cap * sizeof *frames);
	while (off + 4 <= (size_t)st.st_size) {
		uint32_t len = all[off] | all[off + 1] << 8 | all[off + 2] << 16 | (uint32_t)all[off + 3] << 24;
		off += 4;
		if (len == 0 || len > st.st_size - off) { fprintf(stderr, "%s: frame %zu is cut\n", path, n); return 1; }
		if (n == cap) frames = realloc(frames, (cap *= 2) * sizeof *frames);
		frames[n++] = (struct frame){ all + off, len };
		if (len > largest) largest = len;
		off += len;
	}
	if (n == 0 || off != (size_t)st.st_size) { fprintf(stderr, "%s: not a frames file\n", path); return 1; }

	int fd = open(dev, O_RDWR);
	if (fd < 0) { perror(dev); return 1; }
	struct v4l2_format fmt = {0};
	fmt.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
	fmt.fmt.pix.width = width;
	fmt.fmt.pix.height = height;
	fmt.fmt.pix.pixelformat = v4l2_fourcc(fourcc[0], fourcc[1], fourcc[2], fourcc[3]);
	fmt.fmt.pix.field = V4L2_FIELD_NONE;
	fmt.fmt.pix.sizeimage = largest;
	if (xioctl(fd, VIDIOC_S_FMT, &fmt) != 0) { perror("VIDIOC_S_FMT"); return 1; }
	if (fmt.fmt.pix.pixelformat != v4l2_fourcc(fourcc[0], fourcc[1], fourcc[2], fourcc[3]) ||
	    fmt.fmt.pix.width != width || fmt.fmt.pix.height != height) {
		fprintf(stderr, "%s took %.4s %ux%u instead\n", dev, (char *)&fmt.fmt.pix.pixelformat,
			fmt.fmt.pix.width, fmt.fmt.pix.height);
		return 1;
	}
	printf("%s: %.4s %ux%u, sizeimage %u; %zu frames, the largest %u bytes\n", dev, fourcc, width,
	       height, fmt.fmt.pix.sizeimage, n, largest);
	if (largest > fmt.fmt.pix.sizeimage) {
		fprintf(stderr, "a frame of %u bytes does not fit the driver's %u\n", largest, fmt.fmt.pix.sizeimage);
		return 1;
	}
	struct v4l2_streamparm parm = {0};
	parm.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
	parm.parm.output.timeperframe.numerator = 1000;
	parm.parm.output.timeperframe.denominator = (uint32_t)(fps * 1000 + 0.5);
	if (xioctl(fd, VIDIOC_S_PARM, &parm) != 0) perror("VIDIOC_S_PARM (carrying on)");

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	struct timespec next, start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	next = start;
	long period = (long)(1e9 / fps);
	unsigned long fed = 0;
	while (!stop) {
		const struct frame *fr = &frames[fed % n];
		ssize_t w = write(fd, fr->data, fr->len);
		if (w != (ssize_t)fr->len) {
			if (w < 0 && errno == EINTR) continue;
			if (w < 0) perror("write");
			else fprintf(stderr, "frame %lu: wrote %zd of %u bytes\n", fed, w, fr->len);
			return 1;
		}
		if (fed++ == 0) { printf("feeding\n"); fflush(stdout); }
		next.tv_nsec += period;
		while (next.tv_nsec >= 1000000000) { next.tv_nsec -= 1000000000; next.tv_sec++; }
		if (seconds > 0 && (next.tv_sec - start.tv_sec) + (next.tv_nsec - start.tv_nsec) / 1e9 > seconds)
			break;
		/* the feed's own pace, not a wait for something */
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR && !stop)
			;
	}
	printf("fed %lu frames\n", fed);
	return 0;
}
