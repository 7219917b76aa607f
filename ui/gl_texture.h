// An RGB image as an OpenGL texture that Dear ImGui can draw (ImGui::Image takes the GL name as its
// ImTextureID). Owns the GL object; must be destroyed while the GL context is current, so the window
// declares its textures after the context and they go first.
#pragma once
#include <cstdint>

#include "engine/image.h"

namespace conflux::ui {

class GlTexture {
 public:
  GlTexture() = default;
  ~GlTexture();
  GlTexture(GlTexture&& other) noexcept;
  GlTexture& operator=(GlTexture&& other) noexcept;
  GlTexture(const GlTexture&) = delete;
  GlTexture& operator=(const GlTexture&) = delete;

  // Uploads the image (reallocating only when the size changes).
  void upload(const ImageRGB& img);
  bool valid() const { return name_ != 0; }
  int width() const { return width_; }
  int height() const { return height_; }
  // For ImGui::Image.
  void* imgui_id() const { return reinterpret_cast<void*>(static_cast<uintptr_t>(name_)); }

 private:
  void release();
  unsigned name_ = 0;
  int width_ = 0, height_ = 0;
};

}  // namespace conflux::ui
