// Test fixture for the microphone path: a temporary directory, raw sample files, and an ALSA
// configuration whose capture devices read those files (the ALSA `file` plugin over the `null` PCM, as
// docs/platform-notes.md describes). Construct FileFedAlsa BEFORE the Microphone: ALSA_CONFIG_PATH is
// read when PortAudio initialises (Microphone's constructor), and Microphone's destructor terminates
// PortAudio so the next one re-reads it. The file plugin is not paced to real time and repeats stale data
// after the end of its file, so tests pad files with silence and compare an exact count of samples.
// Shared by mic_test.cc and capture_session_test.cc.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace conflux::capture::alsa_test {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "conflux_alsa_test_XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

template <typename T>
std::filesystem::path write_raw(const std::filesystem::path& path, const std::vector<T>& samples) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(samples.data()), static_cast<std::streamsize>(samples.size() * sizeof(T)));
  if (!out) throw std::runtime_error("cannot write " + path.string());
  return path;
}

// An ALSA configuration whose default PCM (and a second PCM named conflux_test_mic) reads samples from
// raw files. The raw files must hold samples in the format and channel count the stream opens.
class FileFedAlsa {
 public:
  static constexpr const char* kNamedDevice = "conflux_test_mic";

  explicit FileFedAlsa(const std::filesystem::path& default_input, const std::filesystem::path& named_input = {}) {
    const std::filesystem::path config = dir_.path() / "asound.conf";
    std::ofstream out(config);
    auto pcm = [&](const std::string& name, const std::filesystem::path& infile) {
      out << "pcm." << name << " {\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  infile \""
          << infile.string() << "\"\n  format \"raw\"\n}\n";
    };
    pcm("!default", default_input);
    pcm(kNamedDevice, named_input.empty() ? default_input : named_input);
    out.close();
    if (!out) throw std::runtime_error("cannot write " + config.string());
    if (const char* previous = std::getenv("ALSA_CONFIG_PATH")) previous_ = previous;
    // alsa.conf must come first: it defines the plugin types the second file uses.
    setenv("ALSA_CONFIG_PATH", ("/usr/share/alsa/alsa.conf:" + config.string()).c_str(), 1);
  }
  ~FileFedAlsa() {
    if (previous_) {
      setenv("ALSA_CONFIG_PATH", previous_->c_str(), 1);
    } else {
      unsetenv("ALSA_CONFIG_PATH");
    }
  }
  FileFedAlsa(const FileFedAlsa&) = delete;
  FileFedAlsa& operator=(const FileFedAlsa&) = delete;

 private:
  TempDir dir_;
  std::optional<std::string> previous_;
};

}  // namespace conflux::capture::alsa_test
