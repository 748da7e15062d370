/* The layout of the V4L2 structs and the ioctl requests that livestream's v4l2
 * source and the M2M codecs use (src/v4l2/ioctl.rs), as this C compiler lays them out for
 * its target from the target's linux/videodev2.h, one line each.
 *
 * scripts/cross.sh --test builds it with each cross gcc (and the host's cc),
 * runs it (ARM under qemu-user) and compares its output with
 * tests/arm/v4l2-layout-lp64.txt (x86_64, aarch64) or v4l2-layout-armhf.txt
 * (32-bit ARM, hard-float, 32-bit time_t as Debian 12 and Raspberry Pi OS 12
 * have it): the file the unit test `layouts_are_the_c_compilers` in ioctl.rs
 * compares bindgen's structs with on the same target. Through the file, Rust's
 * layout must be gcc's. (The build's own check, that each request encodes its
 * struct's size, cannot see a wrong layout: the v4l crate computes the requests
 * from the same bindgen structs.) */
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/videodev2.h>

#define STRUCT(t) printf("size %s %zu\nalign %s %zu\n", #t, sizeof(struct t), #t, alignof(struct t))
#define FIELD(t, f) printf("offset %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define REQUEST(r) printf("request %s 0x%lx\n", #r, (unsigned long)(r))

int main(void) {
  STRUCT(v4l2_buffer);
  FIELD(v4l2_buffer, bytesused);
  FIELD(v4l2_buffer, flags);
  FIELD(v4l2_buffer, timestamp);
  FIELD(v4l2_buffer, sequence);
  FIELD(v4l2_buffer, memory);
  FIELD(v4l2_buffer, m);
  FIELD(v4l2_buffer, length);
  FIELD(v4l2_buffer, request_fd);
  STRUCT(v4l2_capability);
  FIELD(v4l2_capability, capabilities);
  FIELD(v4l2_capability, device_caps);
  STRUCT(v4l2_control);
  STRUCT(v4l2_fmtdesc);
  FIELD(v4l2_fmtdesc, pixelformat);
  STRUCT(v4l2_format);
  FIELD(v4l2_format, fmt);
  STRUCT(v4l2_frmivalenum);
  FIELD(v4l2_frmivalenum, type);
  FIELD(v4l2_frmivalenum, discrete);
  STRUCT(v4l2_frmsizeenum);
  FIELD(v4l2_frmsizeenum, type);
  FIELD(v4l2_frmsizeenum, discrete);
  STRUCT(v4l2_pix_format);
  FIELD(v4l2_pix_format, bytesperline);
  FIELD(v4l2_pix_format, sizeimage);
  STRUCT(v4l2_query_ext_ctrl);
  FIELD(v4l2_query_ext_ctrl, minimum);
  FIELD(v4l2_query_ext_ctrl, maximum);
  FIELD(v4l2_query_ext_ctrl, step);
  FIELD(v4l2_query_ext_ctrl, default_value);
  FIELD(v4l2_query_ext_ctrl, flags);
  STRUCT(v4l2_querymenu);
  FIELD(v4l2_querymenu, index);
  STRUCT(v4l2_requestbuffers);
  STRUCT(v4l2_streamparm);
  FIELD(v4l2_streamparm, parm);
  STRUCT(v4l2_outputparm);
  FIELD(v4l2_outputparm, timeperframe);
  STRUCT(v4l2_plane);
  FIELD(v4l2_plane, bytesused);
  FIELD(v4l2_plane, length);
  FIELD(v4l2_plane, m);
  FIELD(v4l2_plane, data_offset);
  STRUCT(v4l2_plane_pix_format);
  FIELD(v4l2_plane_pix_format, sizeimage);
  FIELD(v4l2_plane_pix_format, bytesperline);
  STRUCT(v4l2_pix_format_mplane);
  FIELD(v4l2_pix_format_mplane, plane_fmt);
  FIELD(v4l2_pix_format_mplane, num_planes);
  STRUCT(v4l2_event);
  FIELD(v4l2_event, type);
  FIELD(v4l2_event, u);
  FIELD(v4l2_event, pending);
  FIELD(v4l2_event, sequence);
  FIELD(v4l2_event, timestamp);
  FIELD(v4l2_event, id);
  STRUCT(v4l2_event_subscription);
  FIELD(v4l2_event_subscription, type);
  FIELD(v4l2_event_subscription, id);
  FIELD(v4l2_event_subscription, flags);
  STRUCT(v4l2_selection);
  FIELD(v4l2_selection, type);
  FIELD(v4l2_selection, target);
  FIELD(v4l2_selection, flags);
  FIELD(v4l2_selection, r);
  printf("size v4l2_buf_type %zu\n", sizeof(enum v4l2_buf_type));
  REQUEST(VIDIOC_DQBUF);
  REQUEST(VIDIOC_ENUM_FMT);
  REQUEST(VIDIOC_ENUM_FRAMEINTERVALS);
  REQUEST(VIDIOC_ENUM_FRAMESIZES);
  REQUEST(VIDIOC_G_CTRL);
  REQUEST(VIDIOC_G_PARM);
  REQUEST(VIDIOC_QBUF);
  REQUEST(VIDIOC_QUERYBUF);
  REQUEST(VIDIOC_QUERYCAP);
  REQUEST(VIDIOC_QUERYMENU);
  REQUEST(VIDIOC_QUERY_EXT_CTRL);
  REQUEST(VIDIOC_REQBUFS);
  REQUEST(VIDIOC_STREAMOFF);
  REQUEST(VIDIOC_STREAMON);
  REQUEST(VIDIOC_S_CTRL);
  REQUEST(VIDIOC_S_FMT);
  REQUEST(VIDIOC_S_PARM);
  REQUEST(VIDIOC_G_FMT);
  REQUEST(VIDIOC_DQEVENT);
  REQUEST(VIDIOC_SUBSCRIBE_EVENT);
  REQUEST(VIDIOC_S_SELECTION);
  return 0;
}
