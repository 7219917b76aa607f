// GlTexture: glTexImage2D on size changes, glTexSubImage2D otherwise. Only OpenGL 1.1 entry points,
// which libGL exports directly, so no loader is needed here.
#include "ui/gl_texture.h"

#include <GL/gl.h>

#include <utility>

namespace conflux::ui {

GlTexture::~GlTexture() { release(); }

GlTexture::GlTexture(GlTexture&& other) noexcept
    : name_(std::exchange(other.name_, 0)), width_(other.width_), height_(other.height_) {}

GlTexture& GlTexture::operator=(GlTexture&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::exchange(other.name_, 0);
    width_ = other.width_;
    height_ = other.height_;
  }
  return *this;
}

void GlTexture::release() {
  if (name_) glDeleteTextures(1, &name_);
  name_ = 0;
  width_ = height_ = 0;
}

void GlTexture::upload(const ImageRGB& img) {
  if (img.width <= 0 || img.height <= 0) return;
  if (!name_) {
    glGenTextures(1, &name_);
    glBindTexture(GL_TEXTURE_2D, name_);
    // Linear filtering: the camera view and thumbnails are drawn scaled.
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  } else {
    glBindTexture(GL_TEXTURE_2D, name_);
  }
  // RGB8 rows are width * 3 bytes: not a multiple of GL's default 4-byte row alignment.
  glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
  if (img.width != width_ || img.height != height_) {
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGB8, img.width, img.height, 0, GL_RGB, GL_UNSIGNED_BYTE, img.rgb.data());
    width_ = img.width;
    height_ = img.height;
  } else {
    glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, img.width, img.height, GL_RGB, GL_UNSIGNED_BYTE, img.rgb.data());
  }
}

}  // namespace conflux::ui
