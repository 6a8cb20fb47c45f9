# `make deb`: one Debian package per install component (see
# install-layout.cmake), built by CPack's DEB generator. docs/packaging.md
# says why CPack rather than dpkg-buildpackage.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME qrexec-cpp)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Maintainer: field and changelog trailer (install-layout.cmake). The
# project has no mail address of its own yet, so the default is one lintian
# rejects (bogus-mail-host); whoever publishes packages sets theirs.
set(CPACK_PACKAGE_CONTACT "${QREXEC_PACKAGE_CONTACT}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL vm dom0 host)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared-library dependencies come from dpkg-shlibdeps (only libc, since
# libstdc++ is linked statically).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The build is RelWithDebInfo (the tests want symbols); the packages ship
# the binaries stripped (no .debug_* or .symtab), as Debian policy asks.
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_VM_PACKAGE_NAME qrexec-cpp-vm)
# CPack indents the extended description itself: lines have no leading space.
set(CPACK_COMPONENT_VM_DESCRIPTION
    "qrexec agent side for a qube\nThe agent, qrexec-client-vm, the fork server and the PAM session\nhelper, with the qube's default services, PAM stack and systemd unit.")
set(CPACK_DEBIAN_DOM0_PACKAGE_NAME qrexec-cpp-dom0)
set(CPACK_COMPONENT_DOM0_DESCRIPTION
    "qrexec admin side\nThe per-domain qrexec-daemon, qrexec-client, the policy daemon and\npolicy tools, with the default policy and systemd units.")
set(CPACK_DEBIAN_HOST_PACKAGE_NAME qrexec-cpp-host)
set(CPACK_COMPONENT_HOST_DESCRIPTION
    "qrexec embedded host\nqrexec-host turns one Linux machine into a small Qubes: it is dom0, and\nevery domain is a bubblewrap sandbox (own namespaces, a read-only system\nfrom its template, a private home) whose agent reaches the per-domain\nqrexec-daemon through the host's channel broker.")
set(CPACK_DEBIAN_HOST_PACKAGE_DEPENDS "bubblewrap, qrexec-cpp-vm, qrexec-cpp-dom0")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Files under /etc are configuration: listing them as conffiles makes dpkg
# keep the admin's edits on upgrade. (Symlinks are not conffiles.)
set(conffiles_dir ${CMAKE_BINARY_DIR}/deb-control)
file(WRITE ${conffiles_dir}/vm/conffiles
"/etc/qubes-rpc/qubes.WaitForSession
/etc/qubes/rpc-config/README
")
if(TARGET qrexec-pam-session)
  file(APPEND ${conffiles_dir}/vm/conffiles "/etc/pam.d/qrexec\n")
endif()
file(WRITE ${conffiles_dir}/dom0/conffiles
"/etc/qubes/policy.d/35-compat.policy
/etc/qubes/policy.d/90-admin-policy-default.policy
/etc/qubes/policy.d/README
/etc/qubes/policy.d/include/admin-policy-ro
/etc/qubes/policy.d/include/admin-policy-rwx
/etc/qubes-rpc/policy.RegisterArgument
")
set(CPACK_DEBIAN_VM_PACKAGE_CONTROL_EXTRA ${conffiles_dir}/vm/conffiles)
set(CPACK_DEBIAN_DOM0_PACKAGE_CONTROL_EXTRA ${conffiles_dir}/dom0/conffiles)

include(CPack)
