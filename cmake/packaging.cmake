# `make deb`: one Debian package per install component (see
# install-layout.cmake), built by CPack's DEB generator. docs/packaging.md
# says why CPack rather than dpkg-buildpackage.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME qrexec-cpp)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "qrexec-cpp maintainers <qrexec-cpp@localhost>")
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

set(CPACK_DEBIAN_VM_PACKAGE_NAME qrexec-cpp-vm)
set(CPACK_COMPONENT_VM_DESCRIPTION
    "qrexec agent side for a qube\n The agent, qrexec-client-vm, the fork server and the PAM session\n helper, with the qube's default services, PAM stack and systemd unit.")
set(CPACK_DEBIAN_DOM0_PACKAGE_NAME qrexec-cpp-dom0)
set(CPACK_COMPONENT_DOM0_DESCRIPTION
    "qrexec admin side\n The per-domain qrexec-daemon, qrexec-client, the policy daemon and\n policy tools, with the default policy and systemd units.")
set(CPACK_DEBIAN_HOST_PACKAGE_NAME qrexec-cpp-host)
set(CPACK_COMPONENT_HOST_DESCRIPTION
    "qrexec embedded host\n Runs domains as bubblewrap sandboxes connected by qrexec.")
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
