<#
.SYNOPSIS
    Helpers shared by the wfpcallout test-VM scripts (dot-sourced, not run).

.DESCRIPTION
    Administrator check, native-command invocation with exit-code checks,
    and waiting for the driver service to reach a state. The scripts that
    dot-source this file set StrictMode and ErrorActionPreference first.
#>

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# The kernel service the INF's AddService creates, and the package's files.
$script:ServiceName = 'WfpCallout'
$script:InfName = 'wfpcallout.inf'
$script:SysName = 'wfpcallout.sys'
# The test certificate wdk-build's package flow signs with.
$script:TestCertificateSubject = 'CN=WDRLocalTestCert'

function Assert-Administrator {
    <# Stops unless the session is elevated (drivers, certificates and BCD need it). #>
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'Run this script from an elevated PowerShell (Run as administrator).'
    }
}

function Assert-Windows64 {
    <# The driver is built for x64 and ARM64 (a package per architecture). #>
    if (-not [Environment]::Is64BitOperatingSystem) {
        throw 'wfpcallout is built for x64 and ARM64: this is not a 64-bit Windows.'
    }
}

function Get-InfArchitecture {
    <# The INF decoration of this machine's architecture: amd64 or arm64. #>
    # The OS's architecture, not the process's: an x64 PowerShell emulated on
    # ARM64 reports AMD64 in PROCESSOR_ARCHITECTURE.
    $os = [System.Runtime.InteropServices.RuntimeInformation]::OSArchitecture
    switch ($os.ToString()) {
        'X64' { return 'amd64' }
        'Arm64' { return 'arm64' }
        default { throw "wfpcallout has no package for OS architecture $os." }
    }
}

function Invoke-Native {
    <#
    .SYNOPSIS
        Runs a native command, shows its output, and throws on an exit code
        that is not listed as accepted.
    #>
    param(
        [Parameter(Mandatory)] [string] $FilePath,
        [string[]] $ArgumentList = @(),
        [int[]] $AcceptExitCode = @(0),
        # Return every exit code to the caller, which interprets it.
        [switch] $AllowAnyExitCode
    )
    Write-Host "> $FilePath $($ArgumentList -join ' ')" -ForegroundColor DarkGray
    # Windows PowerShell turns a native command's stderr lines into errors,
    # which 'Stop' would make fatal: the exit code decides instead.
    $previous = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $output = & $FilePath @ArgumentList 2>&1
        $code = $LASTEXITCODE
    } finally {
        $ErrorActionPreference = $previous
    }
    foreach ($line in $output) { Write-Host "  $line" }
    if (-not $AllowAnyExitCode -and $AcceptExitCode -notcontains $code) {
        throw "$FilePath exited with code $code."
    }
    return $code
}

function Get-WfpCalloutService {
    <# The driver service, or $null when it is not installed. #>
    return Get-Service -Name $script:ServiceName -ErrorAction SilentlyContinue
}

function Wait-WfpCalloutService {
    <# Waits until the service reaches a state; throws after the timeout. #>
    param(
        [Parameter(Mandatory)] [ValidateSet('Running', 'Stopped')] [string] $Status,
        [int] $TimeoutSeconds = 30
    )
    $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
    while ((Get-Date) -lt $deadline) {
        $service = Get-WfpCalloutService
        if ($null -eq $service) { throw "The $script:ServiceName service is not installed." }
        if ($service.Status -eq $Status) { return }
        Start-Sleep -Milliseconds 250
    }
    throw "The $script:ServiceName service did not become $Status within $TimeoutSeconds s."
}

function Start-WfpCalloutService {
    <# Starts the driver; explains the usual failures. #>
    $service = Get-WfpCalloutService
    if ($null -eq $service) { throw "The $script:ServiceName service is not installed: run Install-WfpCallout.ps1." }
    if ($service.Status -eq 'Running') {
        Write-Host "$script:ServiceName is already running."
        return
    }
    $code = Invoke-Native -FilePath 'sc.exe' -ArgumentList @('start', $script:ServiceName) -AllowAnyExitCode
    switch ($code) {
        0 { }
        1056 { Write-Host 'Already running.' }
        577 { throw 'Windows refused the driver signature (error 577): is test signing on (Enable-TestSigning.ps1, then reboot) and the package certificate trusted (Install-WfpCallout.ps1 imports it)?' }
        1275 { throw 'The driver was blocked from loading (error 1275): check Code Integrity events in Event Viewer (Microsoft-Windows-CodeIntegrity/Operational).' }
        2 { throw 'The driver file was not found (error 2): reinstall the package.' }
        default { throw "sc.exe start failed with code $code (see 'net helpmsg $code')." }
    }
    Wait-WfpCalloutService -Status Running
    Write-Host "$script:ServiceName is running." -ForegroundColor Green
}

function Stop-WfpCalloutService {
    <# Stops the driver (its unload completes pended connections and unregisters the callouts). #>
    $service = Get-WfpCalloutService
    if ($null -eq $service) {
        Write-Host "$script:ServiceName is not installed."
        return
    }
    if ($service.Status -eq 'Stopped') {
        Write-Host "$script:ServiceName is already stopped."
        return
    }
    Invoke-Native -FilePath 'sc.exe' -ArgumentList @('stop', $script:ServiceName) -AcceptExitCode @(0, 1062) | Out-Null
    Wait-WfpCalloutService -Status Stopped
    Write-Host "$script:ServiceName is stopped." -ForegroundColor Green
}

function Get-CertificateThumbprint {
    <# The thumbprint of a .cer file. #>
    param([Parameter(Mandatory)] [string] $Path)
    $certificate = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList (Resolve-Path -LiteralPath $Path).Path
    return $certificate.Thumbprint
}
