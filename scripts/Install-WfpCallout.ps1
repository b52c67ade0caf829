<#
.SYNOPSIS
    Installs the wfpcallout driver package on a test VM and starts it.

.DESCRIPTION
    1. Trusts the package's test certificate (WDRLocalTestCert.cer) in the local
       machine's Trusted Root Certification Authorities and Trusted
       Publishers stores.
    2. Installs the driver package through its INF.
    3. Starts the WfpCallout kernel service (`sc.exe start WfpCallout`).

    The package folder is what `cargo make` produces
    (target\<profile>\wfpcallout_package): wfpcallout.inf, .sys, .cat, .cer
    (and .pdb, .natvis for the debugger). Test signing must be on
    (Enable-TestSigning.ps1, then reboot).

    Choice of installer. wfpcallout.inf is a primitive driver package: no
    [Manufacturer] section, an architecture-decorated
    [DefaultInstall.NTamd64] (NTarm64 in an ARM64 package), files in the
    driver store (DIRID 13).
    Microsoft's guidance for primitive drivers on Windows 10 version 1903
    and later is to install and uninstall them through the driver store
    (DiInstallDriver / DiUninstallDriver) rather than by running INF
    sections as a script. Both commands below end there:
      - `pnputil /add-driver <inf> /install` adds the package to the driver
        store and installs it (DiInstallDriver), and reports failures
        through its exit code and output;
      - `rundll32 setupapi.dll,InstallHinfSection DefaultInstall.NTamd64 132
        <inf>`, the classic way to install a DefaultInstall INF: on 1903 and
        later, SetupAPI hands the decorated DefaultInstall of a primitive
        package to the same driver-store install. It reports nothing
        (rundll32 has no exit status for it, errors go to
        %windir%\INF\setupapi.dev.log), so this script checks afterwards
        that the service exists. 132 = 128 (the INF's own folder is the
        source) + 4 (ask before any reboot).
    The default is pnputil, for its diagnostics; -Method InstallHinfSection
    uses rundll32. Either way Uninstall-WfpCallout.ps1 removes the package
    with `pnputil /delete-driver <oemN.inf> /uninstall`.

.PARAMETER PackagePath
    The package folder. Default: the current directory if it holds
    wfpcallout.inf, else the folder of this script's parent's
    target\debug\wfpcallout_package.

.PARAMETER Method
    PnpUtil (default) or InstallHinfSection.

.PARAMETER SkipCertificate
    Do not import the package certificate (already trusted).

.PARAMETER NoStart
    Install only; do not start the service.

.EXAMPLE
    .\Install-WfpCallout.ps1 -PackagePath C:\wfpcallout_package
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [string] $PackagePath,
    [ValidateSet('PnpUtil', 'InstallHinfSection')] [string] $Method = 'PnpUtil',
    [switch] $SkipCertificate,
    [switch] $NoStart
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'WfpCallout.Common.ps1')

Assert-Administrator
Assert-Windows64

# Primitive driver packages need Windows 10 version 1903 (build 18362), which
# is also the first with KMDF 1.29, the driver's minimum framework version.
$build = [Environment]::OSVersion.Version.Build
if ($build -lt 18362) {
    throw "This is Windows build $build: the wfpcallout package is a primitive driver package, which needs Windows 10 version 1903 (build 18362) or later."
}

if (-not $PackagePath) {
    $candidates = @((Get-Location).Path, (Join-Path $PSScriptRoot '..\target\debug\wfpcallout_package'))
    $PackagePath = $candidates | Where-Object { Test-Path -LiteralPath (Join-Path $_ $script:InfName) } | Select-Object -First 1
    if (-not $PackagePath) {
        throw "No package found (looked for $script:InfName in: $($candidates -join ', ')). Pass -PackagePath <folder with wfpcallout.inf>."
    }
}
$PackagePath = (Resolve-Path -LiteralPath $PackagePath).Path
$inf = Join-Path $PackagePath $script:InfName
$sys = Join-Path $PackagePath $script:SysName
$cat = Join-Path $PackagePath 'wfpcallout.cat'
foreach ($file in @($inf, $sys, $cat)) {
    if (-not (Test-Path -LiteralPath $file)) { throw "The package is incomplete: $file is missing." }
}
Write-Host "Package: $PackagePath"

# Test signing: only a warning here (bcdedit's output is localized).
$bcd = (& bcdedit.exe /enum '{current}') -join "`n"
if ($bcd -notmatch 'testsigning\s+Yes') {
    Write-Warning 'Test signing does not look enabled for this boot: the driver will not load. Run Enable-TestSigning.ps1 and reboot.'
}

if (-not $SkipCertificate) {
    $cer = Get-ChildItem -LiteralPath $PackagePath -Filter '*.cer' | Select-Object -First 1
    if ($null -eq $cer) {
        throw 'No .cer in the package: pass -SkipCertificate if the signing certificate is already trusted.'
    }
    foreach ($store in @('Root', 'TrustedPublisher')) {
        if ($PSCmdlet.ShouldProcess("Cert:\LocalMachine\$store", "import $($cer.Name)")) {
            Import-Certificate -FilePath $cer.FullName -CertStoreLocation "Cert:\LocalMachine\$store" | Out-Null
            Write-Host "Trusted $($cer.Name) in LocalMachine\$store."
        }
    }
}

# A running older build must stop before its file can be replaced.
$existing = Get-WfpCalloutService
if ($null -ne $existing -and $existing.Status -ne 'Stopped') {
    Write-Host "$script:ServiceName is running: stopping it before the upgrade."
    Stop-WfpCalloutService
}

if ($PSCmdlet.ShouldProcess($inf, "install with $Method")) {
    switch ($Method) {
        'PnpUtil' {
            # 3010: success, reboot required (ERROR_SUCCESS_REBOOT_REQUIRED).
            $code = Invoke-Native -FilePath 'pnputil.exe' -ArgumentList @('/add-driver', $inf, '/install') -AcceptExitCode @(0, 3010)
            if ($code -eq 3010) { Write-Warning 'pnputil asks for a reboot to finish the installation.' }
        }
        'InstallHinfSection' {
            $arguments = "setupapi.dll,InstallHinfSection DefaultInstall.NT$(Get-InfArchitecture) 132 $inf"
            Write-Host "> rundll32.exe $arguments" -ForegroundColor DarkGray
            Start-Process -FilePath 'rundll32.exe' -ArgumentList $arguments -Wait -NoNewWindow
        }
    }
    if ($null -eq (Get-WfpCalloutService)) {
        throw "The installation did not create the $script:ServiceName service: see $env:windir\INF\setupapi.dev.log."
    }
    Write-Host "Installed the $script:ServiceName service." -ForegroundColor Green
}

if (-not $NoStart) {
    if ($PSCmdlet.ShouldProcess($script:ServiceName, 'start')) {
        Start-WfpCalloutService
    }
}

Write-Host ''
Write-Host 'Next: wfpctl status    (then see docs\WALKTHROUGH.md)'
