// A fixed-capacity ring of values kept on the UI thread for the rolling plots: push never allocates,
// the oldest value goes when it is full. Its layout matches what ImGui::PlotLines reads (a pointer,
// a count, the index of the oldest value, a stride), so plots draw straight from it without copies.
#pragma once
#include <array>
#include <cstddef>

namespace conflux::ui {

template <class T, size_t Capacity>
class Ring {
 public:
  static_assert(Capacity > 0);
  void push(const T& v) {
    items_[next_ % Capacity] = v;
    ++next_;
  }
  size_t size() const { return next_ < Capacity ? next_ : Capacity; }
  bool empty() const { return next_ == 0; }
  size_t total_pushed() const { return next_; }
  // Storage index of the oldest value (ImGui::PlotLines' values_offset).
  size_t oldest_index() const { return next_ < Capacity ? 0 : next_ % Capacity; }
  // The i-th value, oldest first.
  const T& at(size_t i) const { return items_[(oldest_index() + i) % Capacity]; }
  const T& newest() const { return items_[(next_ + Capacity - 1) % Capacity]; }
  const T* data() const { return items_.data(); }
  static constexpr size_t capacity() { return Capacity; }

 private:
  std::array<T, Capacity> items_{};
  size_t next_ = 0;
};

}  // namespace conflux::ui
