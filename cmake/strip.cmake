# Installed binaries (`cmake --install --strip`, CPACK_STRIP_FILES) are
# stripped the way dh_strip does it: besides the debug sections and the
# symbol table (what plain `strip` removes), the .comment and .note sections,
# which only name the compiler (lintian: binary-has-unneeded-section). CMake
# runs CMAKE_STRIP with the file as its only argument, hence a wrapper. It
# takes effect for targets of directories added after this file is included
# (CMake reads CMAKE_STRIP in the directory that defines the target), so the
# top-level CMakeLists.txt includes it before add_subdirectory().
if(DEFINED CACHE{CMAKE_STRIP} AND NOT "$CACHE{CMAKE_STRIP}" STREQUAL "")
  set(QREXEC_STRIP_WRAPPER ${CMAKE_BINARY_DIR}/qrexec-strip)
  file(WRITE ${QREXEC_STRIP_WRAPPER}
       "#!/bin/sh\nexec '$CACHE{CMAKE_STRIP}' --remove-section=.comment --remove-section=.note \"$@\"\n")
  file(CHMOD ${QREXEC_STRIP_WRAPPER} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
       GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  set(CMAKE_STRIP ${QREXEC_STRIP_WRAPPER})
endif()
