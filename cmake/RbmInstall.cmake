# cmake/RbmInstall.cmake — what `cmake --install build --prefix P` puts under P:
#
#   bin/rbm_dist rbm_eval mnist2h5 rbm_bench
#   share/man/man1/<program>.1            generated at build time by help2man from --help
#                                         and --version (so they never drift from the options)
#   share/rbm_dist/slurm/*                the Slurm scripts, told where the programs are
#   share/modulefiles/rbm_dist/<version>  Tcl modulefile (Lmod and Environment Modules):
#                                         module use P/share/modulefiles; module load rbm_dist
#   share/doc/rbm_dist/README.md
#
# The Slurm scripts and the modulefile are written at INSTALL time, because only then
# is the prefix known (`--prefix P` overrides CMAKE_INSTALL_PREFIX); DESTDIR is honoured
# (the files name the final prefix, not the staging folder).
include(GNUInstallDirs)

set(RBM_PROGRAMS rbm_dist rbm_eval mnist2h5 rbm_bench)
set(_rbm_installed "")
foreach(p IN LISTS RBM_PROGRAMS)
  if(TARGET ${p})
    list(APPEND _rbm_installed ${p})
  endif()
endforeach()
install(TARGETS ${_rbm_installed} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# ---- man pages ----------------------------------------------------------------
find_program(RBM_HELP2MAN help2man)
option(RBM_MAN_PAGES "Generate man pages with help2man (Debian package help2man)" ON)
set(_rbm_name_rbm_dist "train a binary RBM with CD-k or PCD, data-parallel over MPI")
set(_rbm_name_rbm_eval "log-likelihood, pseudo-likelihood, pictures and features of a trained RBM")
set(_rbm_name_mnist2h5 "convert MNIST-format IDX files to the HDF5 dataset rbm_dist reads")
set(_rbm_name_rbm_bench "CD-1 samples/s of rbm_dist against the GEMM-derived bound")
if(RBM_MAN_PAGES AND NOT RBM_HELP2MAN)
  message(WARNING "help2man not found: no man pages (apt-get install help2man, or -DRBM_MAN_PAGES=OFF)")
elseif(RBM_MAN_PAGES)
  set(_rbm_pages "")
  foreach(p IN LISTS _rbm_installed)
    set(page ${PROJECT_BINARY_DIR}/man/${p}.1)
    # The programs call MPI_Init: an MPI singleton. Open MPI refuses to start as root
    # unless told; these variables are set for this command only (harmless otherwise).
    # (ASAN_OPTIONS: in the -DRBM_SANITIZE=ON build, Open MPI's allocations left at exit are
    # not our leaks and must not fail the man pages.)
    set(_rbm_cmd ${CMAKE_COMMAND} -E env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        ASAN_OPTIONS=detect_leaks=0
        OPENBLAS_NUM_THREADS=1
        ${CMAKE_COMMAND} -DHELP2MAN=${RBM_HELP2MAN} -DPROGRAM=$<TARGET_FILE:${p}>
        -DNAME=${p} "-DDESCRIPTION=${_rbm_name_${p}}" -DOUTPUT=${page}
        -P ${PROJECT_SOURCE_DIR}/cmake/install/man_page.cmake)
    add_custom_command(OUTPUT ${page}
      COMMAND ${_rbm_cmd}
      DEPENDS ${p} ${PROJECT_SOURCE_DIR}/cmake/install/man_page.cmake
      COMMENT "help2man: man page ${p}.1"
      VERBATIM)
    list(APPEND _rbm_pages ${page})
  endforeach()
  add_custom_target(man_pages ALL DEPENDS ${_rbm_pages})
  install(FILES ${_rbm_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

# ---- Slurm scripts and modulefile (written at install time) -----------------------
install(CODE "
  set(RBM_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(RBM_STAGE_DIR \"${PROJECT_BINARY_DIR}/install-stage\")
  set(RBM_VERSION \"${PROJECT_VERSION}\")
  set(RBM_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(RBM_MANDIR \"${CMAKE_INSTALL_MANDIR}\")
  set(RBM_DATADIR \"${CMAKE_INSTALL_DATADIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/install/install_scripts.cmake\")
")
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
