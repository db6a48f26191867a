# The paper's MaPLe+ATPrompt base-to-novel settings per dataset (sourced); EPO / NCTX in the environment win.
maple_settings() {
    local epo=5 nctx=4
    case $1 in
        caltech101 | oxford_pets | oxford_flowers | eurosat) epo=10 ;;
        fgvc_aircraft | ucf101) nctx=2 ;;
    esac
    EPO=${EPO:-$epo}
    NCTX=${NCTX:-$nctx}
}
